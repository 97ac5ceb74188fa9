"""Envelopes and decisions as bytes, for the hand-off between the milter and its analysis workers.

pickle would do, but it spends its time in the `__getstate__`/`__setstate__` that dataclasses
generate (Python code, one call per object): about 40 us for a typical Decision there and back,
close to half of what the whole hand-off may cost (BENCHMARKS.md). Here each model class is
flattened to the list of its field values, in declaration order, and written with marshal
(C); decoding sets the slots directly. About 7 us to encode and 10 to decode.

The schema is read once from the classes' type hints, so a field added to the model is carried
without a change here. A value the schema does not expect (a field of a new kind of type) makes
encode() fall back to pickle for that value: slower, never wrong. Both ends are the same program
(the workers are forked from the milter), so the format never crosses versions.
"""
from __future__ import annotations

import dataclasses
import enum
import marshal
import pickle
import types
import typing
from typing import Any

from ..core.model import Decision, Envelope

MARSHAL, PICKLE = b"m", b"p"

# Field kinds.
_PLAIN, _MODEL, _MODELS, _ENUM = range(4)

_Schema = tuple[tuple[str, int, Any, Any], ...]  # (name, kind, class, slot descriptor)
_SCHEMAS: dict[type, _Schema] = {}


def _kind(hint: Any) -> tuple[int, Any]:
    """The kind of a field from its type hint (Optional[X] is X: None is carried as None)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _kind(args[0]) if len(args) == 1 else (_PLAIN, None)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis and dataclasses.is_dataclass(args[0]):
            _schema(args[0])
            return _MODELS, args[0]
        return _PLAIN, None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _ENUM, hint
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        _schema(hint)
        return _MODEL, hint
    return _PLAIN, None


def _schema(cls: type) -> _Schema:
    if cls not in _SCHEMAS:
        _SCHEMAS[cls] = ()  # a placeholder while the fields are read (recursive models)
        hints = typing.get_type_hints(cls)
        _SCHEMAS[cls] = tuple((f.name, *_kind(hints[f.name]), getattr(cls, f.name))
                              for f in dataclasses.fields(cls))
    return _SCHEMAS[cls]


_schema(Decision)
_schema(Envelope)


class _Unexpected(Exception):
    """A value the schema does not describe: pickle the whole thing instead."""


def _flatten(obj: Any, cls: type) -> list[Any]:
    if type(obj) is not cls:
        raise _Unexpected(type(obj).__name__)
    out = []
    for name, kind, sub, _ in _SCHEMAS[cls]:
        v = getattr(obj, name)
        if v is not None and kind != _PLAIN:
            if kind == _MODEL:
                v = _flatten(v, sub)
            elif kind == _MODELS:
                v = [_flatten(x, sub) for x in v]
            elif type(v) is sub:
                v = v.value
            else:
                raise _Unexpected(type(v).__name__)
        out.append(v)
    return out


_new = object.__new__


def _build(cls: type, values: list[Any]) -> Any:
    schema = _SCHEMAS[cls]
    if len(values) != len(schema):
        raise ValueError(f"{cls.__name__}: {len(values)} values for {len(schema)} fields")
    obj = _new(cls)
    for (_, kind, sub, slot), v in zip(schema, values):
        if v is not None and kind != _PLAIN:
            if kind == _MODEL:
                v = _build(sub, v)
            elif kind == _MODELS:
                v = tuple([_build(sub, x) for x in v])
            else:
                v = sub._value2member_map_[v]  # what Enum(value) looks up, without its call
        # Frozen dataclasses refuse setattr; their __init__ sets the slots the same way.
        slot.__set__(obj, v)
    return obj


def encode(obj: Any, cls: type, extra: Any = None) -> bytes:
    """obj (an instance of the model class cls) and an extra plain value, as bytes."""
    try:
        return MARSHAL + marshal.dumps((_flatten(obj, cls), extra))
    except (_Unexpected, ValueError):  # marshal raises ValueError for what it cannot write
        return PICKLE + pickle.dumps((obj, extra), protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes, cls: type) -> tuple[Any, Any]:
    """(object, extra) from encode()'s bytes."""
    if data[:1] == MARSHAL:
        values, extra = marshal.loads(memoryview(data)[1:])
        return _build(cls, values), extra
    if data[:1] == PICKLE:
        obj, extra = pickle.loads(memoryview(data)[1:])
        if type(obj) is not cls:
            raise ValueError(f"expected {cls.__name__}, got {type(obj).__name__}")
        return obj, extra
    raise ValueError(f"unknown encoding {data[:1]!r}")
