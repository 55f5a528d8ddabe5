"""Fixtures for end-to-end tests: a fake OpenAI upstream and a real ``vmx serve`` in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KEY_SHA
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import VmxProcess

#: The connection's provider key; tests assert it never shows up in logs or answers.
UPSTREAM_SECRET = "sk-upstream-SECRET-0123456789abcdef"


@pytest.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def anthropic_upstream() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def bedrock_upstream() -> AsyncIterator[FakeBedrock]:
    fake = FakeBedrock()
    await fake.start()
    yield fake
    await fake.stop()


def e2e_config(upstream: FakeOpenAI, **resources: Any) -> dict[str, Any]:
    """A config with connection ``up`` (openai at the fake) and resources ``NAME -> model id``.

    ``chat`` -> ``gpt-4o-mini`` is always present; keyword arguments add ``name=model`` pairs
    or ``name={full resource dict}``.
    """
    res: dict[str, Any] = {"chat": {"model": {"connection": "up", "model": "gpt-4o-mini"}}}
    for name, spec in resources.items():
        res[name] = spec if isinstance(spec, dict) else {"model": {"connection": "up", "model": spec}}
    return {
        "limits": {"max_body_bytes": 65536, "max_timeout_ms": 20000},
        "workspaces": {
            "acme": {
                "environments": {
                    "prod": {
                        "connections": {
                            "up": {
                                "provider": "openai",
                                "credentials": {"api_key": UPSTREAM_SECRET},
                                "options": {"base_url": upstream.base_url},
                            },
                            "m": {"provider": "mock"},
                        },
                        "resources": res,
                        "api_keys": {"app": {"key_sha256": KEY_SHA, "resources": ["*"]}},
                    },
                    "staging": {},
                }
            }
        },
    }


@pytest.fixture
async def vmx_factory(tmp_path: Path) -> AsyncIterator[Any]:
    """Start ``vmx serve`` processes from config dicts; all are stopped after the test."""
    started: list[VmxProcess] = []

    async def start(config: dict[str, Any], env: dict[str, str] | None = None) -> VmxProcess:
        workdir = tmp_path / f"vmx{len(started)}"
        workdir.mkdir()
        proc = VmxProcess(config, workdir, env)
        await proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        await proc.stop()


@pytest.fixture
async def vmx(upstream: FakeOpenAI, vmx_factory: Any) -> VmxProcess:
    """A gateway in front of the fake upstream with the default e2e config."""
    proc: VmxProcess = await vmx_factory(e2e_config(upstream))
    return proc
