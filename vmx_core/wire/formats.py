"""The API shapes a client can speak and a provider can answer in."""

from __future__ import annotations

import enum


class Format(enum.StrEnum):
    CHAT_COMPLETIONS = "chat-completions"
    RESPONSES = "responses"
    ANTHROPIC = "anthropic"

    @property
    def dialect(self) -> str:
        """The error dialect (DESIGN §6): ``openai`` or ``anthropic``."""
        return "anthropic" if self is Format.ANTHROPIC else "openai"
