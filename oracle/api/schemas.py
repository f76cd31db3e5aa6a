"""JSON Schemas of the records the API returns, derived from their dataclasses, so the OpenAPI documents
cannot drift from what the handlers serve."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

_SCALARS: dict[Any, dict[str, Any]] = {str: {"type": "string"}, int: {"type": "integer"}, float: {"type": "number"},
                                       bool: {"type": "boolean"}, type(None): {"type": "null"}}


def schema_of(tp: Any, components: dict[str, Any]) -> dict[str, Any]:
    """The schema of a type hint; dataclasses go into `components` and are referred to by name."""
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    if tp is Any:
        return {}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        name = tp.__name__
        if name not in components:
            components[name] = {}  # taken before recursing (a record holding itself)
            hints = typing.get_type_hints(tp)
            fields = dataclasses.fields(tp)
            components[name] = {
                "type": "object", "additionalProperties": False, "required": [f.name for f in fields],
                "properties": {f.name: schema_of(hints[f.name], components) for f in fields}}
        return {"$ref": f"#/components/schemas/{name}"}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [schema_of(a, components) for a in args]}
    if origin is list:
        return {"type": "array", "items": schema_of(args[0], components)}
    if origin is dict:
        return {"type": "object", "additionalProperties": schema_of(args[1], components)}
    raise TypeError(f"no JSON Schema for {tp!r}")
