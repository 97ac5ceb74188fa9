"""Metamorphic testing: meaning-preserving transforms of real mail, and the verdict each must keep.

A transform rewrites a message the way a phisher (or a forwarding user, or a mailing list)
would, without changing what the reader sees it ask for. Applied to every dev phish, the
verdict must stay phish; applied to every genuine mail, it must stay clean. The registry is
TRANSFORMS (name -> Transform); modules of this package add to it with @transform:

- messages.py: the tools transforms share (edit the text of every displayed part, set a header,
  wrap a message), so each transform is a few lines;
- identity.py: the claim moved between display name, subject, signature and logo; forward
  wrapping; list-copy rewriting; lure wording removed while the call to action stays;
- wording.py: per-language paraphrases and code synonyms, written from independent phrasing;
- render.py: what the reader sees but a naive filter does not (hidden CSS, Unicode tricks,
  MIME shapes, attachments, URL spellings) - the techniques of "read mail as the reader sees it".

tests/core/test_metamorphic.py runs a bounded sample in `make test`; bench/eval.py runs the
whole cross product and reports a rate per transform.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

Rewrite = Callable[[bytes, random.Random], "bytes | None"]


@dataclass(frozen=True, slots=True)
class Transform:
    name: str
    applies_to: tuple[str, ...]  # labels it is meant for: "phish", "genuine" (legit and hardneg)
    rewrite: Rewrite  # returns None when the message has nothing it can change
    doc: str


TRANSFORMS: dict[str, Transform] = {}


def transform(name: str, *, applies_to: tuple[str, ...] = ("phish", "genuine")) -> Callable[[Rewrite], Rewrite]:
    """Register a rewrite under name; its docstring says what it does and why it keeps the meaning."""
    def register(fn: Rewrite) -> Rewrite:
        if name in TRANSFORMS:
            raise ValueError(f"transform {name!r} registered twice")
        TRANSFORMS[name] = Transform(name=name, applies_to=applies_to, rewrite=fn, doc=(fn.__doc__ or "").strip())
        return fn
    return register


def load_all() -> dict[str, Transform]:
    """Import every transform module (each registers on import) and return the registry."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name != "messages":
            importlib.import_module(f"{__name__}.{info.name}")
    return TRANSFORMS
