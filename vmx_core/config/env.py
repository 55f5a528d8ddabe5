"""``${VAR}`` and ``${VAR:-default}`` expansion over a parsed YAML tree.

Expansion runs after YAML parsing, on string scalars only, so a value with quotes, colons or
newlines can never change the document's structure.  ``$${`` is a literal ``${``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vmx_core.errors import ConfigError

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(tree: Any, environ: Mapping[str, str], path: str = "$") -> Any:
    """Return ``tree`` with every ``${...}`` replaced; an unset variable without a default
    is a :class:`ConfigError` naming the key path where it was used."""
    errors: list[tuple[str, str]] = []
    out = _walk(tree, environ, path, errors)
    if errors:
        raise ConfigError(errors)
    return out


def _walk(node: Any, environ: Mapping[str, str], path: str, errors: list[tuple[str, str]]) -> Any:
    if isinstance(node, str):
        return _expand_str(node, environ, path, errors) if "$" in node else node
    if isinstance(node, dict):
        return {k: _walk(v, environ, f"{path}{_seg(k)}", errors) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, environ, f"{path}[{i}]", errors) for i, v in enumerate(node)]
    return node


def _seg(key: object) -> str:
    return f".{key}"


def _expand_str(
    value: str, environ: Mapping[str, str], path: str, errors: list[tuple[str, str]]
) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        value = environ.get(name)
        if default is not None:
            # As in the shell, ":-" also replaces a variable that is set but empty.
            return value or default
        if value is not None:
            return value
        errors.append((path, f"environment variable {name} is not set (use ${{{name}:-}} for a default)"))
        return ""

    return _VAR.sub(sub, value)
