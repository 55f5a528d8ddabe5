"""The variables routing rules read (DESIGN §8), computed lazily: a value is built only when
a rule reads it, so a resource whose rules never mention ``tokens`` never counts tokens."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from vmx_core.tokens import estimate_request
from vmx_core.wire.formats import Format

_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})

#: The variables' shapes, for compile-time checks of rules (see ``cel.compile_expression``):
#: a typo such as ``tokens.inputs`` or ``tokens.input > "8000"`` fails ``vmx check``.
SCHEMA: dict[str, dict[str, str] | str] = {
    "tokens": {"input": "num"},
    "request": {
        "format": "string", "model": "string", "stream": "bool", "max_tokens": "any",
        "tools_count": "num", "messages_count": "num", "last_message": "string",
        "all_messages_content": "string", "has_images": "bool",
    },
    "metadata": "map",
    "api_key": {"name": "string"},
    "now": {"hour": "num", "weekday": "num"},
}


class Lazy(Mapping[str, Any]):
    """A read-only map whose values are computed on first access and then cached."""

    def __init__(self, factories: Mapping[str, Callable[[], Any]]) -> None:
        self._factories = factories
        self._values: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            factory = self._factories[key]  # KeyError for unknown names, as a Mapping should
            value = self._values[key] = factory()
            return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)


def rule_variables(
    fmt: Format,
    body: Mapping[str, Any],
    metadata: Mapping[str, str],
    api_key_name: str | None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    input_tokens: Callable[[], int] | None = None,
) -> dict[str, Any]:
    texts = Lazy({"all": lambda: _texts(fmt, body)})
    request = Lazy(
        {
            "format": lambda: str(fmt),
            "model": lambda: body.get("model"),
            "stream": lambda: bool(body.get("stream")),
            "max_tokens": lambda: body.get("max_tokens") or body.get("max_completion_tokens") or body.get("max_output_tokens"),
            "tools_count": lambda: len(body.get("tools") or []),
            "messages_count": lambda: len(_items(fmt, body)),
            "last_message": lambda: texts["all"][-1] if texts["all"] else "",
            "all_messages_content": lambda: " ".join(texts["all"]),
            "has_images": lambda: _has_images(body),
        }
    )
    clock = Lazy({"now": now})
    return {
        "tokens": Lazy({"input": input_tokens or (lambda: estimate_request(body))}),
        "request": request,
        "metadata": dict(metadata),
        "api_key": {"name": api_key_name},
        "now": Lazy({"hour": lambda: clock["now"].hour, "weekday": lambda: clock["now"].weekday()}),
    }


def _items(fmt: Format, body: Mapping[str, Any]) -> list[Any]:
    items = body.get("input") if fmt is Format.RESPONSES else body.get("messages")
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    return items if isinstance(items, list) else []


def _texts(fmt: Format, body: Mapping[str, Any]) -> list[str]:
    """The text of each message, system/instructions first; tool calls and results excluded."""
    out: list[str] = []
    for system in (body.get("system"), body.get("instructions")):
        text = _content_text(system)
        if text:
            out.append(text)
    for item in _items(fmt, body):
        if isinstance(item, Mapping) and item.get("role") in ("user", "assistant", "system", "developer"):
            text = _content_text(item.get("content"))
            if text:
                out.append(text)
    return out


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", "")) for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        )
    return ""


def _has_images(node: Any) -> bool:
    if isinstance(node, Mapping):
        if node.get("type") in _IMAGE_PARTS:
            return True
        return any(_has_images(v) for k, v in node.items() if k in ("messages", "input", "content"))
    if isinstance(node, list):
        return any(_has_images(v) for v in node)
    return False
