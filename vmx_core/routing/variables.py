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


class _Source:
    """What the variables are computed from, and the values two of them share."""

    __slots__ = ("_now", "_texts", "body", "fmt", "input_tokens", "now")

    def __init__(
        self, fmt: Format, body: Mapping[str, Any], input_tokens: Callable[[], int], now: Callable[[], dt.datetime]
    ) -> None:
        self.fmt, self.body, self.input_tokens, self.now = fmt, body, input_tokens, now
        self._texts: list[str] | None = None
        self._now: dt.datetime | None = None

    def texts(self) -> list[str]:
        if self._texts is None:
            self._texts = _texts(self.fmt, self.body)
        return self._texts

    def clock(self) -> dt.datetime:
        if self._now is None:
            self._now = self.now()
        return self._now


Factory = Callable[[_Source], Any]


class Lazy(Mapping[str, Any]):
    """A read-only map whose values are computed on first access and then cached.  The
    factories are shared module-level functions of the request's ``_Source``: building the
    variables costs two small objects per request, not a closure per variable."""

    __slots__ = ("_factories", "_source", "_values")

    def __init__(self, factories: Mapping[str, Factory], source: _Source) -> None:
        self._factories = factories
        self._source = source
        self._values: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            factory = self._factories[key]  # KeyError for unknown names, as a Mapping should
            value = self._values[key] = factory(self._source)
            return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)


def _max_tokens(s: _Source) -> Any:
    b = s.body
    return b.get("max_tokens") or b.get("max_completion_tokens") or b.get("max_output_tokens")


_REQUEST: dict[str, Factory] = {
    "format": lambda s: str(s.fmt),
    "model": lambda s: s.body.get("model"),
    "stream": lambda s: bool(s.body.get("stream")),
    "max_tokens": _max_tokens,
    "tools_count": lambda s: len(s.body.get("tools") or []),
    "messages_count": lambda s: len(_items(s.fmt, s.body)),
    "last_message": lambda s: s.texts()[-1] if s.texts() else "",
    "all_messages_content": lambda s: " ".join(s.texts()),
    "has_images": lambda s: _has_images(s.body),
}
_TOKENS: dict[str, Factory] = {"input": lambda s: s.input_tokens()}
_NOW: dict[str, Factory] = {"hour": lambda s: s.clock().hour, "weekday": lambda s: s.clock().weekday()}


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rule_variables(
    fmt: Format,
    body: Mapping[str, Any],
    metadata: Mapping[str, str],
    api_key_name: str | None,
    now: Callable[[], dt.datetime] = _utc_now,
    input_tokens: Callable[[], int] | None = None,
) -> dict[str, Any]:
    source = _Source(fmt, body, input_tokens or (lambda: estimate_request(body)), now)
    return {
        "tokens": Lazy(_TOKENS, source),
        "request": Lazy(_REQUEST, source),
        "metadata": dict(metadata),
        "api_key": {"name": api_key_name},
        "now": Lazy(_NOW, source),
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
