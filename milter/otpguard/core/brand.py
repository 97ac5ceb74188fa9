"""Brand profiles: what a brand is called, which domains are really its own, its phone numbers."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import ProfileError
from .normalize import clean


@dataclass(frozen=True, slots=True, kw_only=True)
class BrandProfile:
    id: str
    display: str
    # Words whose mention claims the brand on their own ("amazon", "アマゾン").
    names: tuple[str, ...]
    # Product words that claim the brand only beside a main name or a lure ("prime", "kindle").
    products: tuple[str, ...]
    # Registered domains (by the Public Suffix List) that belong to the brand.
    domains: tuple[str, ...]
    # Domains the brand sends through or links to, that never claim to be the brand by themselves.
    infrastructure_domains: tuple[str, ...]
    # Labels lookalike domains imitate: the registrable label of the brand ("amazon").
    stems: tuple[str, ...]
    phones: tuple[str, ...]
    # Lure vocabulary sets of the core (lures.py) that this brand's lures use.
    lure_sets: tuple[str, ...]
    # Brand-specific lure phrases, by lure kind.
    extra_lures: dict[str, tuple[str, ...]]
    path: str = ""

    def owns(self, host: str | None) -> bool:
        """Is this host (or domain) one of the brand's own domains or below one?"""
        return _below(host, _cached_set(self.domains))

    def trusts_link(self, host: str | None) -> bool:
        """Is this host the brand's own or its sending/linking infrastructure?"""
        return _below(host, _cached_set(self.domains)) or _below(host, _cached_set(self.infrastructure_domains))


def _below(host: str | None, domains: frozenset[str]) -> bool:
    # Suffix walk rather than PSL lookup: immune to PSL gaps such as com.be.
    h = (host or "").lower().rstrip(".")
    while h:
        if h in domains:
            return True
        _, _, h = h.partition(".")
    return False


_SETS: dict[tuple[str, ...], frozenset[str]] = {}


def _cached_set(items: tuple[str, ...]) -> frozenset[str]:
    found = _SETS.get(items)
    if found is None:
        found = _SETS[items] = frozenset(x.lower() for x in items)
    return found


def _visible(phrases: list[str], path: Path, key: str) -> None:
    """Names and phrases are matched on normalised text: one that normalises to nothing (only
    spaces or invisible characters) would match every message."""
    for phrase in phrases:
        if not clean(phrase).strip():
            shown = phrase.encode("unicode_escape").decode("ascii")
            raise ProfileError(path, key, f'"{shown}" is empty once normalised (spaces and invisible characters '
                                         "only): it would match every message")


def load_brand(path: Path, *, config_file: Path | str, key: str) -> BrandProfile:
    """Read a brand profile; errors name the profile file and the key."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ProfileError(config_file, key, f"cannot read brand profile {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(path, "", f"not valid TOML: {exc}") from None

    allowed = {"id", "display", "names", "products", "domains", "infrastructure_domains", "stems",
               "phones", "lure_sets", "extra_lures"}
    for k in data:
        if k not in allowed:
            raise ProfileError(path, k, "unknown key")

    def strings(name: str, required: bool = False, matched: bool = False) -> tuple[str, ...]:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
            raise ProfileError(path, name, "must be a list of non-empty strings")
        if required and not value:
            raise ProfileError(path, name, "must not be empty")
        if matched:
            _visible(value, path, name)
        return tuple(value)

    for name in ("id", "display"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise ProfileError(path, name, "must be a non-empty string")
    extra = data.get("extra_lures", {})
    if not isinstance(extra, dict):
        raise ProfileError(path, "extra_lures", "must be a table of lists")
    extra_lures: dict[str, tuple[str, ...]] = {}
    for kind, phrases in extra.items():
        if not isinstance(phrases, list) or not all(isinstance(x, str) and x for x in phrases):
            raise ProfileError(path, f"extra_lures.{kind}", "must be a list of non-empty strings")
        _visible(phrases, path, f"extra_lures.{kind}")
        extra_lures[kind] = tuple(phrases)
    return BrandProfile(
        id=data["id"],
        display=data["display"],
        names=tuple(x.lower() for x in strings("names", True, matched=True)),
        products=tuple(x.lower() for x in strings("products", matched=True)),
        domains=tuple(x.lower() for x in strings("domains", True)),
        infrastructure_domains=tuple(x.lower() for x in strings("infrastructure_domains")),
        stems=tuple(x.lower() for x in strings("stems", True, matched=True)),
        phones=strings("phones"),
        lure_sets=strings("lure_sets"),
        extra_lures=extra_lures,
        path=str(path),
    )
