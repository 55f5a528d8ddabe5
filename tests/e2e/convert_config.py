"""A gateway config in front of both fakes: resource ``gpt`` on the OpenAI fake and ``claude`` on
the Anthropic fake, so each endpoint reaches each upstream, converted or passed through."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import e2e_config
from tests.fakes.anthropic_upstream import API_KEY, FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI


def convert_config(openai_fake: FakeOpenAI, anthropic_fake: FakeAnthropic) -> dict[str, Any]:
    config = e2e_config(openai_fake)
    prod = config["workspaces"]["acme"]["environments"]["prod"]
    prod["connections"]["claude"] = {
        "provider": "anthropic",
        "credentials": {"api_key": API_KEY},
        "options": {"base_url": anthropic_fake.base_url},
    }
    prod["resources"]["gpt"] = {"model": {"connection": "up", "model": "gpt-4o-mini"}}
    prod["resources"]["claude"] = {"model": {"connection": "claude", "model": "claude-sonnet-4-5"}}
    return config
