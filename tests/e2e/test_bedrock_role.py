"""``role_arn`` on a Bedrock connection: the role is assumed through a real STS endpoint
(moto's server, reached through botocore's ``AWS_ENDPOINT_URL_STS``), once, and requests are
signed with the temporary credentials it issued -- which are all the fake Bedrock accepts."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import pytest

from tests.conftest import KEY
from tests.e2e.conftest import e2e_config
from tests.fakes.bedrock_upstream import ACCESS_KEY, AWS_ENV, REGION, FakeBedrock
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import VmxProcess
from tests.services.sts import assume_role_calls, issued_credentials, new_role, sts_endpoint  # noqa: F401 (fixture)
from vmx_core.providers import UpstreamCall
from vmx_core.wire.formats import Format
from vmx_providers._aws import AwsSigner
from vmx_providers._http import HttpClient
from vmx_providers.bedrock import BedrockInvokeClient

MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
HI = [{"role": "user", "content": "hi"}]
_KEY_ID = re.compile(r"Credential=([^/]+)/")


@pytest.fixture
async def role_bedrock() -> AsyncIterator[FakeBedrock]:
    """A fake Bedrock that accepts only credentials STS issued."""
    fake = FakeBedrock(credentials=issued_credentials)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def sts_env(sts_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:  # noqa: F811 (fixture)
    """The base credentials and the STS endpoint, in this process's environment and as a
    child's."""
    env = {**AWS_ENV, "AWS_ENDPOINT_URL_STS": sts_endpoint}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    yield env


def signed_by(request: dict[str, Any]) -> tuple[str, str | None]:
    """(access key id, session token) a request the fake Bedrock saw was signed with."""
    headers = {k.lower(): v for k, v in request["headers"].items()}  # names are case-insensitive
    m = _KEY_ID.search(headers["authorization"])
    assert m is not None
    return m.group(1), headers.get("x-amz-security-token")


async def test_requests_are_signed_with_the_assumed_role_which_is_assumed_once(
    upstream: FakeOpenAI, role_bedrock: FakeBedrock, vmx_factory: Any, sts_env: dict[str, str]
) -> None:
    """Through vmx serve: every Bedrock request carries the assumed role's key id and session
    token, not the chain's base key, and several requests cost one AssumeRole."""
    role = new_role()
    config = e2e_config(upstream)
    prod = config["workspaces"]["acme"]["environments"]["prod"]
    prod["connections"]["aws"] = {"provider": "bedrock-invoke",
                                  "options": {"region": REGION, "base_url": role_bedrock.base_url, "role_arn": role}}
    prod["resources"]["claude"] = {"model": {"connection": "aws", "model": MODEL}}
    proc: VmxProcess = await vmx_factory(config, env=sts_env)
    client = anthropic.AsyncAnthropic(base_url=proc.base_url() + "/anthropic", api_key=KEY, max_retries=0)
    for _ in range(3):
        msg = await client.messages.create(model="claude", max_tokens=50, messages=HI)
        assert msg.content[0].text == "echo: hi"
    async with client.messages.stream(model="claude", max_tokens=50, messages=HI) as stream:
        assert (await stream.get_final_message()).content[0].text == "echo: hi"
    assert (await client.messages.count_tokens(model="claude", messages=HI)).input_tokens > 0
    await client.close()

    calls = assume_role_calls(role)
    assert len(calls) == 1
    assert len(role_bedrock.requests) == 5
    for request in role_bedrock.requests:
        assert signed_by(request) == (calls[0].access_key_id, calls[0].session_token)
    assert calls[0].access_key_id != ACCESS_KEY


async def test_credentials_near_expiry_are_refreshed_off_the_event_loop(
    role_bedrock: FakeBedrock, sts_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the signer's clock moved on: ten minutes before expiry the cached credentials
    still sign; five minutes before, the role is assumed again, in a worker thread, and the
    new credentials sign."""
    threads: list[threading.Thread] = []
    assume = AwsSigner._assume

    def recording(self: AwsSigner, session: Any, role_arn: str) -> dict[str, str]:
        threads.append(threading.current_thread())
        return assume(self, session, role_arn)

    monkeypatch.setattr(AwsSigner, "_assume", recording)
    now = dt.datetime.now(dt.UTC)
    role = new_role()
    signer = AwsSigner(REGION, role_arn=role, clock=lambda: now)
    client = BedrockInvokeClient(HttpClient.create(role_bedrock.base_url, {}), signer)
    call = UpstreamCall(format=Format.ANTHROPIC, model=MODEL, body={"max_tokens": 20, "messages": HI}, stream=False, timeout=10)
    try:
        await client.send(call)
        first = assume_role_calls(role)
        assert len(first) == 1
        expiry = first[0].expiration.replace(tzinfo=dt.UTC)

        now = expiry - dt.timedelta(minutes=10)
        await client.send(call)
        assert len(assume_role_calls(role)) == 1

        now = expiry - dt.timedelta(minutes=4)
        await client.send(call)
        calls = assume_role_calls(role)
        assert len(calls) == 2
    finally:
        await client.aclose()
    assert [signed_by(r) for r in role_bedrock.requests] == [
        (calls[0].access_key_id, calls[0].session_token),
        (calls[0].access_key_id, calls[0].session_token),
        (calls[1].access_key_id, calls[1].session_token),
    ]
    assert calls[1].access_key_id != calls[0].access_key_id
    assert len(threads) == 2 and threading.main_thread() not in threads
