"""Redaction of audit payloads: what is removed from a body before it is stored.

Three things are replaced, in this order, by one walk over the parsed JSON:

1. **Credentials**, in every mode (``full`` included: DESIGN §12 keeps decrypted secrets out
   of audit rows).  A value under a key that names a credential (``Authorization``,
   ``api_key``, ``x-api-key``, ``password``, ``client_secret``, ``*_token``...) becomes
   ``"[REDACTED]"``; inside any other string, the secrets the gateway knows for the request
   (the caller's key, the tenant's connection credentials) and text shaped like a well-known
   key (``Bearer ...``, ``sk-...``, ``vmx_...``, ``AKIA...``) are cut out.
2. **Base64 media** (``redacted`` only): ``data:`` URLs, base64 sources (Anthropic
   ``{"type": "base64", "data"}``, OpenAI ``input_audio``, Gemini ``inline_data``) and any
   long string that is entirely base64 become ``{type, media_type, bytes, sha256}``: enough to
   tell which file was sent, without storing it.
3. **``audit.redact_paths``** (``redacted`` only): JSON paths whose values become
   ``"[REDACTED]"`` (see :func:`compile_path` for the syntax).

Strings also lose NUL characters: Postgres ``jsonb`` cannot hold ``\\u0000``, and one such
row would fail every batch it is in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

from attrs import frozen

from vmx_core.errors import ConfigError

REDACTED = "[REDACTED]"

#: Key names (lower-cased, without ``-`` and ``_``) whose values are credentials.
_CREDENTIAL_KEYS = frozenset({
    "authorization", "proxyauthorization", "apikey", "xapikey", "xgoogapikey", "apitoken",
    "accesstoken", "refreshtoken", "idtoken", "authtoken", "sessiontoken", "bearertoken",
    "secret", "clientsecret", "secretkey", "secretaccesskey", "awssecretaccesskey",
    "awssessiontoken", "password", "passwd", "privatekey", "cookie", "setcookie", "credentials",
})
_CREDENTIAL_SUFFIXES = ("apikey", "secret", "password", "accesstoken", "secretkey")
#: Well-known credential shapes, wherever they appear inside a string.
_CREDENTIAL_TEXT = re.compile(
    r"Bearer\s+(?=[A-Za-z0-9._~+/=-]*\d)[A-Za-z0-9._~+/=-]{12,}"
    r"|\bsk-[A-Za-z0-9_-]{16,}"
    r"|\bvmx_[A-Za-z0-9_-]{43}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bAIza[0-9A-Za-z_-]{35}"
    r"|\b(?:gsk|xai|pplx)[-_][A-Za-z0-9]{20,}"
)
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*);base64,", re.I)
_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")
#: A bare string this long made only of base64 characters is taken for media: text that long
#: has spaces or punctuation.
_BARE_BASE64_MIN = 1024


def _is_credential_key(key: str) -> bool:
    k = key.lower().replace("-", "").replace("_", "")
    return k in _CREDENTIAL_KEYS or k.endswith(_CREDENTIAL_SUFFIXES)


def media_summary(data: str, media_type: str | None, kind: str = "base64") -> dict[str, Any]:
    """What replaces a base64 blob: its type, size and digest (of the decoded bytes)."""
    compact = "".join(data.split())
    try:
        raw = base64.b64decode(compact + "=" * (-len(compact) % 4), altchars=b"-_" if "-" in compact or "_" in compact else None)
    except (binascii.Error, ValueError):
        raw = compact.encode()
    return {"type": kind, "media_type": media_type, "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


# -- JSON paths ------------------------------------------------------------------------------

_STEP = re.compile(
    r"\.\.(?P<deep>[\w-]+|\*)"        # ..name: that key at any depth
    r"|\.(?P<name>[\w-]+|\*)"         # .name or .*
    r"|\[(?P<index>-?\d+|\*)\]"                # [0], [-1], [*]
    r"|\[(?P<q>['\"])(?P<quoted>(?:(?!(?P=q)).)*)(?P=q)\]"  # ['any key'] / ["any key"]
)

#: One step of a path: (kind, value) with kind one of key, index, any, deep.
Step = tuple[str, Any]


@frozen
class JsonPath:
    text: str
    steps: tuple[Step, ...]


def compile_path(text: str) -> JsonPath:
    """A JSONPath subset: ``$`` then ``.key``, ``['key']``, ``[N]``, ``[*]``, ``.*`` and
    ``..key`` (that key at any depth).  E.g. ``$.messages[*].content``, ``$..user_email``."""
    src = text.strip()
    rest = src[1:] if src.startswith("$") else ("." + src if src and src[0] not in ".[" else src)
    steps: list[Step] = []
    pos = 0
    while pos < len(rest):
        m = _STEP.match(rest, pos)
        if m is None:
            raise ValueError(f"invalid JSON path {text!r} at {rest[pos:pos + 20]!r}")
        if m.group("deep") is not None:
            steps.append(("deep", m.group("deep")))
        elif m.group("name") is not None:
            steps.append(("any", None) if m.group("name") == "*" else ("key", m.group("name")))
        elif m.group("index") is not None:
            idx = m.group("index")
            steps.append(("any", None) if idx == "*" else ("index", int(idx)))
        else:
            steps.append(("key", m.group("quoted")))
        pos = m.end()
    if not steps:
        raise ValueError(f"invalid JSON path {text!r}: it selects the whole body")
    return JsonPath(text, tuple(steps))


def _apply(node: Any, steps: Sequence[Step]) -> None:
    """Replace in place every value ``steps`` select under ``node``."""
    kind, arg = steps[0]
    last = len(steps) == 1
    if kind == "deep":
        _apply_deep(node, arg, steps[1:])
        return
    for container, key in _children(node, kind, arg):
        if last:
            container[key] = REDACTED
        else:
            _apply(container[key], steps[1:])


def _children(node: Any, kind: str, arg: Any) -> list[tuple[Any, Any]]:
    if kind == "key" and isinstance(node, dict) and arg in node:
        return [(node, arg)]
    if kind == "index" and isinstance(node, list) and -len(node) <= arg < len(node):
        return [(node, arg)]
    if kind == "any":
        if isinstance(node, dict):
            return [(node, k) for k in node]
        if isinstance(node, list):
            return [(node, i) for i in range(len(node))]
    return []


def _apply_deep(node: Any, name: str, rest: Sequence[Step]) -> None:
    if isinstance(node, dict):
        for k in list(node):
            if name in ("*", k):
                if rest:
                    _apply(node[k], rest)
                else:
                    node[k] = REDACTED
            if isinstance(node[k], dict | list):
                _apply_deep(node[k], name, rest)
    elif isinstance(node, list):
        for item in node:
            _apply_deep(item, name, rest)


# -- the redactor ----------------------------------------------------------------------------


@frozen
class Redactor:
    """How one sink redacts: ``full`` scrubs credentials only; ``redacted`` also media and
    ``paths``."""

    mode: str = "redacted"
    paths: tuple[JsonPath, ...] = ()

    @classmethod
    def from_config(cls, mode: str, redact_paths: Iterable[str]) -> Redactor:
        paths = []
        for i, text in enumerate(redact_paths):
            try:
                paths.append(compile_path(text))
            except ValueError as exc:
                raise ConfigError(str(exc), f"$.audit.redact_paths[{i}]") from None
        return cls(mode, tuple(paths))

    def redact(self, value: Any, secrets: Sequence[str] = ()) -> Any:
        """A redacted copy of the parsed JSON ``value`` (the input is not modified)."""
        known = tuple(sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True))
        out = self._walk(value, known)
        if self.mode == "redacted":
            for path in self.paths:
                _apply(out, path.steps)
        return out

    def _walk(self, node: Any, secrets: tuple[str, ...]) -> Any:
        if isinstance(node, str):
            return self._text(node, secrets)
        if isinstance(node, list):
            return [self._walk(v, secrets) for v in node]
        if not isinstance(node, dict):
            return node
        media = self._media_source(node) if self.mode == "redacted" else None
        if media is not None:
            return media
        out: dict[str, Any] = {}
        for k, v in node.items():
            key = k.replace("\x00", "") if isinstance(k, str) else k
            if isinstance(k, str) and _is_credential_key(k) and v not in (None, "", {}, []):
                out[key] = REDACTED
            else:
                out[key] = self._walk(v, secrets)
        return out

    def _text(self, text: str, secrets: tuple[str, ...]) -> Any:
        if self.mode == "redacted" and len(text) > 32:
            m = _DATA_URL.match(text)
            if m is not None:
                return media_summary(text[m.end():], m.group(1), "data_url")
            if len(text) >= _BARE_BASE64_MIN and _BASE64.match(text):
                return media_summary(text, None)
        if "\x00" in text:
            text = text.replace("\x00", "")
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _CREDENTIAL_TEXT.sub(REDACTED, text)

    def _media_source(self, node: dict[str, Any]) -> dict[str, Any] | None:
        """A dict that *is* a base64 media source, summarised; ``None`` for anything else."""
        data = node.get("data")
        if isinstance(data, str) and len(data) > 32:
            if node.get("type") == "base64":  # Anthropic image/document source
                media = node.get("media_type")
                return media_summary(data, media if isinstance(media, str) else None)
            fmt = node.get("format")
            if isinstance(fmt, str) and set(node) <= {"data", "format"}:  # OpenAI input_audio
                return media_summary(data, f"audio/{fmt}")
            mime = node.get("mime_type", node.get("mimeType"))
            if isinstance(mime, str):  # Gemini inline_data
                return media_summary(data, mime)
        return None
