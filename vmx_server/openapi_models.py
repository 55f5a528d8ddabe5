"""JSON Schemas of the config objects, derived from their attrs models.

The management API's bodies are the config file's objects (``vmx_core/config/models.py``), and
the API types them strictly (``structure(..., strict=True)``), so one walk over the models gives
schemas that cannot drift from what the API accepts.  Each model becomes two components: ``X``,
what a client sends (fields with defaults are optional), and ``XAnswer``, what the API answers
(the stored object with every default filled in, so every field is present).
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import attrs

from vmx_core.secrets import Secret

#: A workspace, environment, connection, resource, key, role or pool name (config validation).
NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}
#: A user id: an OIDC ``sub`` or email.
USER_ID = {"type": "string", "pattern": r"^[^/\\\r\n\x00]{1,320}$"}

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    Secret: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    dt.datetime: {"type": "string", "format": "date-time"},
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def schema_of(tp: Any, defs: dict[str, Any], answer: bool) -> dict[str, Any]:
    """The schema of a field type; attrs classes are added to ``defs`` and referenced."""
    if tp is Any:
        return {}
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        inner = [schema_of(a, defs, answer) for a in args if a is not type(None)]
        one = inner[0] if len(inner) == 1 else {"anyOf": inner}
        return {"anyOf": [one, {"type": "null"}]} if type(None) in args else one
    if origin is list:
        return {"type": "array", "items": schema_of(args[0], defs, answer)}
    if origin is dict:
        return {"type": "object", "additionalProperties": schema_of(args[1], defs, answer)}
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    if attrs.has(tp):
        name = tp.__name__ + ("Answer" if answer else "")
        if name not in defs:
            defs[name] = {}  # placed first, so a recursive model would terminate
            defs[name] = object_schema(tp, defs, answer)
        return ref(name)
    raise TypeError(f"no JSON Schema for {tp!r}")


def object_schema(cls: type, defs: dict[str, Any], answer: bool, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """An attrs model as a closed object: unknown keys are refused, like the config loader does."""
    hints = typing.get_type_hints(cls)
    fields = [f for f in attrs.fields(cls) if f.name not in exclude]
    return {
        "type": "object",
        "properties": {f.name: schema_of(hints[f.name], defs, answer) for f in fields},
        "required": [f.name for f in fields if answer or f.default is attrs.NOTHING],
        "additionalProperties": False,
    }
