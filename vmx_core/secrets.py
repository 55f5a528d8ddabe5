"""A value that must never be printed: credentials, keys, tokens."""

from __future__ import annotations

from attrs import field, frozen


def mask(value: str) -> str:
    """``sk-...abcd``: enough to recognise a key, never enough to use it."""
    if len(value) <= 8:
        return "****"
    head = value[:3] if not value.startswith("vmx_") else value[:4]
    return f"{head}...{value[-4:]}"


@frozen(repr=False)
class Secret:
    """Holds a secret string; ``repr``/``str`` show only the masked form.

    Code that needs the plaintext calls :meth:`reveal`, which makes each use easy to find.
    """

    _value: str = field(alias="value")

    def reveal(self) -> str:
        return self._value

    def masked(self) -> str:
        return mask(self._value)

    def __repr__(self) -> str:
        return f"Secret({self.masked()!r})"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)
