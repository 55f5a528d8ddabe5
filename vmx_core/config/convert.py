"""The cattrs converter for the config dialect: strict, and every error carries its path."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, TypeVar, get_origin

import cattrs
from cattrs.cols import list_structure_factory
from cattrs.dispatch import StructureHook
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.v import format_exception

from vmx_core.errors import ConfigError
from vmx_core.secrets import Secret

T = TypeVar("T")

def _structure_bool(value: Any, _: type) -> bool:
    # cattrs' default is bool(value), which reads the string "false" as True.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"expected a boolean, got {value!r}")


def _structure_int(value: Any, _: type) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        # Environment expansion always yields strings: `port: ${PORT}` must still work.
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def _structure_float(value: Any, _: type) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"expected a number, got {value!r}")


def _structure_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        # YAML turns `model: 4` or `version: 1.5` into numbers; a name is still meant.
        return str(value)
    raise ValueError(f"expected a string, got {type(value).__name__}")


def _structure_secret(value: Any, _: type) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return Secret(value)


def _structure_datetime(value: Any, _: type) -> dt.datetime:
    if isinstance(value, dt.datetime):
        result = value
    elif isinstance(value, dt.date):
        result = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        result = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        raise ValueError(f"expected an ISO 8601 timestamp, got {value!r}")
    return result if result.tzinfo else result.replace(tzinfo=dt.UTC)


def _is_list(cl: Any) -> bool:
    return get_origin(cl) is list


def _strict_list_factory(cl: Any, conv: cattrs.BaseConverter) -> StructureHook:
    # cattrs builds a list from any iterable: `resources: chat` would become
    # ['c', 'h', 'a', 't'] and `pools: {}` an empty list.  A list field takes a list.
    inner = list_structure_factory(cl, conv)

    def structure_list(value: Any, _: Any) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        return inner(value, cl)  # type: ignore[no-any-return]

    return structure_list


# -- strict JSON: the management API's bodies ---------------------------------------------------
# A config file is YAML with ``${VAR}`` expansion, so it is read leniently (`port: "8080"`,
# `model: 4`).  Management API bodies are JSON sent by programs: their types are exactly the
# documented ones (/openapi.json), and a string never carries NUL (PostgreSQL cannot store it).

class _Refused(ValueError):
    """A strict hook's refusal: its message is shown as is (the JSON type that was expected)."""


_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})")


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise _Refused(f"expected a string, got {_json_type(value)}")
    if "\x00" in value:
        raise _Refused("must not contain NUL characters")
    return value


def _strict_int(value: Any, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _Refused(f"expected an integer, got {_json_type(value)}")


def _strict_float(value: Any, _: type) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _Refused(f"expected a number, got {_json_type(value)}")


def _strict_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    raise _Refused(f"expected a boolean, got {_json_type(value)}")


def _strict_secret(value: Any, _: type) -> Secret:
    return Secret(_strict_str(value, str))


def _strict_datetime(value: Any, _: type) -> dt.datetime:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise _Refused("expected an RFC 3339 date-time with an offset (2027-06-30T00:00:00Z)")
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _make(strict: bool) -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    if strict:
        hooks: dict[Any, Any] = {bool: _strict_bool, int: _strict_int, float: _strict_float, str: _strict_str,
                                 Secret: _strict_secret, dt.datetime: _strict_datetime}
    else:
        hooks = {bool: _structure_bool, int: _structure_int, float: _structure_float, str: _structure_str,
                 Secret: _structure_secret, dt.datetime: _structure_datetime}
    for cls, hook in hooks.items():
        conv.register_structure_hook(cls, hook)
    conv.register_unstructure_hook(Secret, lambda s: s.reveal())
    conv.register_unstructure_hook(dt.datetime, lambda d: d.isoformat())
    conv.register_structure_hook_factory(_is_list, _strict_list_factory)
    return conv


#: Config files (YAML, ``${VAR}``): numbers and strings convert into each other.
converter = _make(strict=False)
#: Management API bodies (JSON): exactly the documented types.
strict_converter = _make(strict=True)


def structure(data: Any, cls: type[T], path: str = "$", *, strict: bool = False) -> T:
    """Structure ``data`` as ``cls`` or raise :class:`ConfigError` listing every bad path;
    ``strict`` types it as a JSON API body instead of a config file."""
    try:
        return (strict_converter if strict else converter).structure(data, cls)
    except (ClassValidationError, IterableValidationError) as exc:
        raise ConfigError(_errors(exc, path)) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError([(path, str(exc))]) from None


def _errors(exc: BaseException, path: str) -> list[tuple[str, str]]:
    """Walk cattrs' exception tree into ``(path, message)`` pairs.

    Paths are built from the notes, not re-parsed from text, so a key holding quotes or
    `` @ `` cannot garble them: fields and mapping keys append ``.name``, list items ``[i]``,
    and an unknown key is reported at its own path (``...options.bogus``).
    """
    if not isinstance(exc, ClassValidationError | IterableValidationError):
        return _leaf(exc, None, path)
    errors: list[tuple[str, str]] = []
    with_notes, without = exc.group_exceptions()
    for sub, note in with_notes:
        if isinstance(exc, ClassValidationError):
            where = f"{path}.{note.name}"  # type: ignore[union-attr]
        elif str(note).startswith("Structuring mapping"):
            where = f"{path}.{note.index}"
        else:
            where = f"{path}[{note.index}]"
        if isinstance(sub, ClassValidationError | IterableValidationError):
            errors.extend(_errors(sub, where))
        else:
            errors.extend(_leaf(sub, note.type, where))
    for sub in without:
        errors.extend(_leaf(sub, None, path))
    return errors


def _leaf(exc: BaseException, cl: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(exc, ForbiddenExtraKeysError):
        return [(f"{path}.{key}", f"unknown key {key!r}") for key in sorted(exc.extra_fields)]
    if isinstance(exc, _Refused):
        return [(path, str(exc))]
    if isinstance(exc, AttributeError) and str(exc).endswith(("attribute 'keys'", "attribute 'items'")):
        return [(path, "expected a mapping")]
    return [(path, _clean(format_exception(exc, cl)))]


def _clean(message: str) -> str:
    # "unknown error (x not in literal typing.Literal['a', 'b'])" -> something a human reads.
    m = re.search(r"\((.+) not in literal typing\.Literal\[(.*)\]\)", message)
    if m:
        return f"{m.group(1)!s} is not one of {m.group(2)}"
    if message.startswith("invalid value for type, expected "):
        return "expected " + message.removeprefix("invalid value for type, expected ")
    m = re.match(r"unknown error \((.*)\)$", message)
    if m:
        return m.group(1)
    return message


def unstructure(value: Any) -> Any:
    return converter.unstructure(value)
