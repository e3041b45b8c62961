"""What an event contract says about its fields, for the jobs that parse it with Spark: the
Spark schema of a msgspec struct, and the bounds of its strings and maps."""

from __future__ import annotations

import types
import typing
from typing import Literal

import msgspec


def spark_columns(struct: type[msgspec.Struct]) -> list[tuple[str, str]]:
    """(name, Spark type) of each field of a struct, so jobs parse with the same contract."""
    types = {
        int: "bigint",
        str: "string",
        bool: "boolean",
        float: "double",
    }
    columns = []
    for field in msgspec.structs.fields(struct):
        kind = _base_type(field.type)
        ddl = types.get(kind) if isinstance(kind, type) else None
        if ddl is None:
            ddl = "map<string,string>" if kind is dict else "string"
        columns.append((field.encode_name, ddl))
    return columns


def spark_ddl(struct: type[msgspec.Struct]) -> str:
    """The Spark schema (DDL) of a struct's fields (:func:`spark_columns`)."""
    return ", ".join(f"`{name}` {kind}" for name, kind in spark_columns(struct))


def _base_type(tp: object) -> object:
    """int for ``int | None``, ``Annotated[int, ...]``; dict for ``dict[...]``; str for Literal."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _base_type(typing.get_args(tp)[0])
    if origin is Literal:
        return str
    if origin in (dict,):
        return dict
    if origin is not None:  # a union: the first non-None member
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(members[0]) if len(members) == 1 else str
    return tp


def string_limits(struct: type[msgspec.Struct]) -> dict[str, int]:
    """Each string field's maximum length (by its encoded name), as the contract bounds it."""
    limits = {}
    for field in msgspec.structs.fields(struct):
        bound = _max_length(field.type)
        if bound is not None:
            limits[field.encode_name] = bound
    return limits


def map_limits(struct: type[msgspec.Struct]) -> dict[str, tuple[int, int, int]]:
    """Each bounded map field's bounds (entries, characters of a name, of a string value), as
    its annotations say: ``Annotated[dict[Annotated[str, Meta(...)], ...], Meta(...)]``."""
    limits = {}
    for field in msgspec.structs.fields(struct):
        bounds = _map_bounds(field.type)
        if bounds is not None:
            limits[field.encode_name] = bounds
    return limits


def _map_bounds(tp: object) -> tuple[int, int, int] | None:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        found = [b for b in map(_map_bounds, typing.get_args(tp)) if b is not None]
        return found[0] if found else None
    if origin is not typing.Annotated:
        return None
    base, *metas = typing.get_args(tp)
    if typing.get_origin(base) is not dict:
        return None
    entries = next((m.max_length for m in metas if isinstance(m, msgspec.Meta)), None)
    key, value = typing.get_args(base)
    name, text = _max_length(key), _max_length(value)
    if entries is None or name is None or text is None:
        return None
    return entries, name, text


def _max_length(tp: object) -> int | None:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *metas = typing.get_args(tp)
        if base is str:
            return next((m.max_length for m in metas if isinstance(m, msgspec.Meta)), None)
        return None
    if origin in (typing.Union, types.UnionType):
        bounds = [b for b in map(_max_length, typing.get_args(tp)) if b is not None]
        return max(bounds) if bounds else None
    return None
