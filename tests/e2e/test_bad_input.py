"""Bad client input against a real ``vmx serve``: each mistake gets the DESIGN §6 status and
error body in the client's dialect, names the failing field, and the server keeps serving."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest
import pytest_asyncio

from tests.conftest import KEY
from tests.e2e.conftest import e2e_config
from tests.e2e.module_fixtures import servers, upstream  # noqa: F401
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import VmxProcess
from vmx_core.security.apikeys import generate_key, hash_key

# One fake upstream and one gateway serve the whole module (bad input leaves no state behind),
# which keeps the file fast: starting a gateway process costs more than all its tests.
pytestmark = pytest.mark.asyncio(loop_scope="module")

CHAT, RESPONSES, ANTHROPIC = "/chat/completions", "/responses", "/anthropic/v1/messages"
#: A key that may call only ``chat``.
NARROW_KEY = generate_key()
GOOD = {
    CHAT: {"model": "chat", "messages": [{"role": "user", "content": "ping"}]},
    RESPONSES: {"model": "chat", "input": "ping"},
    ANTHROPIC: {"model": "mchat", "max_tokens": 16, "messages": [{"role": "user", "content": "ping"}]},
}


def config(upstream: FakeOpenAI, **limits: Any) -> dict[str, Any]:
    cfg = e2e_config(upstream, other="gpt-4o-mini", mchat={"model": {"connection": "m", "model": "mock-1"}})
    cfg["limits"].update(limits)
    env = cfg["workspaces"]["acme"]["environments"]["prod"]
    env["api_keys"]["narrow"] = {"key_sha256": hash_key(NARROW_KEY), "resources": ["chat"]}
    return cfg


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(upstream: FakeOpenAI, servers: Any) -> VmxProcess:
    """The gateway with ``limits.max_body_bytes: 65536``."""
    proc: VmxProcess = await servers(config(upstream))
    return proc


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def big(upstream: FakeOpenAI, servers: Any) -> VmxProcess:
    """A gateway whose body limit (2 MiB) admits megabyte-sized hostile bodies."""
    proc: VmxProcess = await servers(config(upstream, max_body_bytes=2 * 1024 * 1024))
    return proc


@pytest_asyncio.fixture(loop_scope="module")
async def http(upstream: FakeOpenAI) -> AsyncIterator[aiohttp.ClientSession]:
    upstream.reset()
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, url: str, body: Any = None, *, raw: Any = None, key: str | None = KEY,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    """POST and return (status, headers, parsed JSON body)."""
    h = {"content-type": "application/json", **({"authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
    if isinstance(data, bytes):
        data = io.BytesIO(data)  # aiohttp warns about sending large bytes objects directly
    async with http.post(url, data=data, headers=h) as resp:
        return resp.status, resp.headers, await resp.json(content_type=None)


def openai_error(body: Any, code: str) -> dict[str, Any]:
    """The OpenAI error object, after checking its exact shape and code."""
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "code", "param"}, err
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"]
    return dict(err)


def anthropic_error(body: Any, etype: str) -> dict[str, Any]:
    """The Anthropic error object, after checking its exact shape and type."""
    assert body.get("type") == "error" and set(body) == {"type", "error"}, body
    err = body["error"]
    assert set(err) == {"type", "message"} and err["type"] == etype, err
    assert isinstance(err["message"], str) and err["message"]
    return dict(err)


def dialect_error(endpoint: str, body: Any, code: str, etype: str) -> dict[str, Any]:
    return anthropic_error(body, etype) if endpoint == ANTHROPIC else openai_error(body, code)


async def assert_still_serving(http: aiohttp.ClientSession, vmx: VmxProcess) -> None:
    status, _, body = await post(http, vmx.base_url() + CHAT, GOOD[CHAT])
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == "echo: ping"


@pytest.mark.parametrize("endpoint", [CHAT, RESPONSES, ANTHROPIC])
async def test_malformed_json_is_400_in_the_clients_dialect(gw: VmxProcess, http: aiohttp.ClientSession, endpoint: str) -> None:
    """Malformed JSON is a 400 invalid_request in the endpoint's dialect, and the server keeps serving."""
    status, headers, body = await post(http, gw.base_url() + endpoint, raw=b'{"model": "chat", "messages": [')
    assert status == 400
    err = dialect_error(endpoint, body, "invalid_request", "invalid_request_error")
    assert "not valid JSON" in err["message"]
    assert headers["content-type"].startswith("application/json")
    await assert_still_serving(http, gw)


@pytest.mark.parametrize(
    ("endpoint", "patch", "path"),
    [
        (CHAT, {"model": 42}, "model"),
        (CHAT, {"messages": "ping"}, "messages"),
        (CHAT, {"stream": "yes"}, "stream"),
        (CHAT, {"max_tokens": "10"}, "max_tokens"),
        (RESPONSES, {"input": 7}, "input"),
        (RESPONSES, {"max_output_tokens": -1}, "max_output_tokens"),
        (ANTHROPIC, {"messages": {"role": "user"}}, "messages"),
        (ANTHROPIC, {"max_tokens": True}, "max_tokens"),
        (CHAT, {"vmx": {"timeoutMs": "soon"}}, "vmx.timeoutMs"),
        (CHAT, {"vmx": {"metadata": {"team": 1}}}, "vmx.metadata.team"),
        (RESPONSES, {"vmx": {"secondaryModelIndex": True}}, "vmx.secondaryModelIndex"),
        (CHAT, {"vmx": {"bogus": 1}}, "vmx.bogus"),
    ],
)
async def test_wrong_field_type_is_400_naming_the_field(
    gw: VmxProcess, http: aiohttp.ClientSession, endpoint: str, patch: dict[str, Any], path: str
) -> None:
    """A field of the wrong type is a 400 whose message (and OpenAI ``param``) is the field's path."""
    status, _, body = await post(http, gw.base_url() + endpoint, {**GOOD[endpoint], **patch})
    assert status == 400, body
    err = dialect_error(endpoint, body, "invalid_request", "invalid_request_error")
    assert err["message"].startswith(f"{path}:"), err
    if endpoint != ANTHROPIC:
        assert err["param"] == path
    await assert_still_serving(http, gw)


async def test_body_that_is_not_an_object_is_400(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """A JSON body that is valid but not an object (array, string, null) is a 400."""
    for raw in (b"[1, 2]", b'"chat"', b"null", b""):
        status, _, body = await post(http, gw.base_url() + CHAT, raw=raw)
        assert status == 400, raw
        openai_error(body, "invalid_request")
    await assert_still_serving(http, gw)


async def test_non_utf8_body_is_400(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """Bytes that are not UTF-8 inside a JSON string are a 400, not a crash."""
    raw = b'{"model": "chat", "messages": [{"role": "user", "content": "\xff\xfe\xc3("}]}'
    status, _, body = await post(http, gw.base_url() + CHAT, raw=raw)
    assert status == 400
    assert "UTF-8" in openai_error(body, "invalid_request")["message"]
    await assert_still_serving(http, gw)


async def test_vmx_envelope_of_the_wrong_type_is_400(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """``vmx`` that is not an object is a 400 with ``param: vmx``, in both dialects."""
    for value in ("x", [], 3, True):
        status, _, body = await post(http, gw.base_url() + CHAT, {**GOOD[CHAT], "vmx": value})
        assert status == 400, value
        assert openai_error(body, "invalid_request")["param"] == "vmx"
    status, _, body = await post(http, gw.base_url() + ANTHROPIC, {**GOOD[ANTHROPIC], "vmx": "x"})
    assert status == 400
    assert anthropic_error(body, "invalid_request_error")["message"].startswith("vmx:")
    await assert_still_serving(http, gw)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer vmx_wrong"},
        {"x-api-key": "vmx_wrong"},
        {"authorization": f"Basic {KEY}"},
        {"authorization": "Bearer "},
    ],
    ids=["missing", "wrong-bearer", "wrong-x-api-key", "not-bearer", "empty-bearer"],
)
async def test_missing_or_wrong_key_is_401(gw: VmxProcess, http: aiohttp.ClientSession, headers: dict[str, str]) -> None:
    """A missing, unknown or non-Bearer key is a 401 invalid_api_key on the OpenAI endpoints."""
    for endpoint in (CHAT, RESPONSES):
        status, _, body = await post(http, gw.base_url() + endpoint, GOOD[endpoint], key=None, headers=headers)
        assert status == 401, body
        assert openai_error(body, "invalid_api_key")["type"] == "authentication_error"
    await assert_still_serving(http, gw)


async def test_x_api_key_header_is_accepted(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """The key in ``x-api-key`` authenticates as well as ``Authorization: Bearer``."""
    status, _, body = await post(http, gw.base_url() + CHAT, GOOD[CHAT], key=None, headers={"x-api-key": KEY})
    assert status == 200, body


async def test_anthropic_endpoint_answers_401_in_anthropic_dialect(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """A wrong key on /anthropic/v1/messages is ``{"type":"error","error":{"type":"authentication_error"}}``."""
    status, _, body = await post(http, gw.base_url() + ANTHROPIC, GOOD[ANTHROPIC], key="vmx_wrong")
    assert status == 401
    anthropic_error(body, "authentication_error")
    client = anthropic.AsyncAnthropic(base_url=gw.base_url() + "/anthropic", api_key="vmx_wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        await client.messages.create(**GOOD[ANTHROPIC])
    assert info.value.status_code == 401
    assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    good = anthropic.AsyncAnthropic(base_url=gw.base_url() + "/anthropic", api_key=KEY, max_retries=0)
    message = await good.messages.create(**GOOD[ANTHROPIC])
    assert message.content[0].text  # type: ignore[union-attr]
    await client.close()
    await good.close()


async def test_unauthenticated_requests_get_401_even_for_unknown_names(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """Without a valid key, unknown workspace/environment/resource are 401 too: names do not leak."""
    cases = [("nope", "prod", "chat"), ("acme", "nope", "chat"), ("acme", "prod", "nope"), ("nope", "nope", "nope")]
    for ws, env, resource in cases:
        for key in (None, "vmx_wrong"):
            status, _, body = await post(http, gw.base_url(ws, env) + CHAT, {**GOOD[CHAT], "model": resource}, key=key)
            assert status == 401, (ws, env, resource, key)
            assert "nope" not in openai_error(body, "invalid_api_key")["message"]
    status, _, body = await post(http, gw.base_url("nope", "prod") + ANTHROPIC, GOOD[ANTHROPIC], key=None)
    assert status == 401
    anthropic_error(body, "authentication_error")


async def test_unknown_names_with_a_valid_key_are_404(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """With a valid key, an unknown workspace, environment or resource is a 404 not_found."""
    for ws, env in (("nope", "prod"), ("acme", "nope")):
        status, _, body = await post(http, gw.base_url(ws, env) + CHAT, GOOD[CHAT])
        assert status == 404, (ws, env)
        openai_error(body, "not_found")
    status, headers, body = await post(http, gw.base_url() + RESPONSES, {**GOOD[RESPONSES], "model": "nope"})
    assert status == 404
    assert openai_error(body, "not_found")["param"] == "model"
    assert headers["x-vmx-request-id"]
    status, _, body = await post(http, gw.base_url() + ANTHROPIC, {**GOOD[ANTHROPIC], "model": "nope"})
    assert status == 404
    anthropic_error(body, "not_found_error")
    await assert_still_serving(http, gw)


async def test_key_not_allowed_on_resource_is_403(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """A key scoped to ``[chat]`` may call chat but gets 403 permission_denied on other resources."""
    status, _, body = await post(http, gw.base_url() + CHAT, GOOD[CHAT], key=NARROW_KEY)
    assert status == 200, body
    status, _, body = await post(http, gw.base_url() + CHAT, {**GOOD[CHAT], "model": "other"}, key=NARROW_KEY)
    assert status == 403
    assert openai_error(body, "permission_denied")["param"] == "model"
    status, _, body = await post(http, gw.base_url() + ANTHROPIC, GOOD[ANTHROPIC], key=NARROW_KEY)
    assert status == 403
    anthropic_error(body, "permission_error")


@pytest.mark.parametrize("endpoint", [CHAT, ANTHROPIC])
async def test_body_over_limit_with_content_length_is_413(gw: VmxProcess, http: aiohttp.ClientSession, endpoint: str) -> None:
    """A body over ``limits.max_body_bytes`` with a Content-Length is a 413 request_too_large."""
    raw = json.dumps({**GOOD[endpoint], "pad": "x" * 70_000}).encode()
    status, _, body = await post(http, gw.base_url() + endpoint, raw=raw)
    assert status == 413
    err = dialect_error(endpoint, body, "request_too_large", "request_too_large")
    assert "65536" in err["message"]
    await assert_still_serving(http, gw)


async def test_chunked_body_over_limit_is_413(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """A chunked upload (no Content-Length) over the limit is a 413, and the same client keeps working."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "chat", "messages": [], "pad": "'
        for _ in range(8):
            yield b"x" * 16_384
        yield b'"}'

    for _ in range(3):  # the pooled connection must not be reused after an unread body
        status, _, body = await post(http, gw.base_url() + CHAT, raw=chunks())
        assert status == 413
        assert "65536" in openai_error(body, "request_too_large")["message"]
        await assert_still_serving(http, gw)


async def test_oversized_body_without_key_is_401(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """The key is checked before the body is read: an anonymous oversized request gets 401, not 413."""
    status, _, body = await post(http, gw.base_url() + CHAT, raw=b"x" * 70_000, key=None)
    assert status == 401
    openai_error(body, "invalid_api_key")


async def test_one_megabyte_nesting_bomb_is_400(big: VmxProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    """A 1 MB nesting-depth bomb within the size limit is a 400, and the server keeps serving."""
    vmx = big
    depth = 500_000
    raw = b'{"model": "chat", "messages": ' + b"[" * depth + b"]" * depth + b"}"
    status, _, body = await post(http, vmx.base_url() + CHAT, raw=raw)
    assert status == 400
    assert "depth" in openai_error(body, "invalid_request")["message"]
    assert upstream.requests == []
    await assert_still_serving(http, vmx)


async def test_body_nested_too_deep_to_forward_is_400(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """A body that parses but nests too deeply to re-encode for the upstream is a 400, not a 500."""
    depth = 600
    content = b"[" * depth + b"]" * depth
    for endpoint, field in ((CHAT, b"messages"), (RESPONSES, b"input")):
        raw = b'{"model": "chat", "' + field + b'": [{"role": "user", "content": ' + content + b"}]}"
        status, _, body = await post(http, gw.base_url() + endpoint, raw=raw)
        assert status == 400, body
        openai_error(body, "invalid_request")
    await assert_still_serving(http, gw)


async def test_huge_string_within_limit_reaches_upstream(big: VmxProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    """A string of almost 1 MB within the limit passes through intact and is answered."""
    vmx = big
    text = "é" * 450_000 + "end"  # 900 kB of UTF-8: the fake upstream itself accepts at most 1 MiB
    status, _, body = await post(http, vmx.base_url() + CHAT, {"model": "chat", "messages": [{"role": "user", "content": text}]})
    assert status == 200
    assert body["choices"][0]["message"]["content"] == f"echo: {text}"
    assert upstream.requests[-1]["body"]["messages"][0]["content"] == text


async def test_metadata_crlf_cannot_inject_headers(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """CR/LF in ``vmx.metadata`` values, keys and correlationId are stripped: no header is injected."""
    envelope = {
        "correlationId": "c1\r\nx-injected-corr: yes",
        "metadata": {"team": "a\r\nx-injected: yes", "evil\r\nx-injected-key: 1": "v"},
    }
    status, headers, body = await post(http, gw.base_url() + CHAT, {**GOOD[CHAT], "vmx": envelope})
    assert status == 200, body
    assert not [h for h in headers if h.lower().startswith("x-injected")]
    assert headers["x-vmx-metadata-team"] == "ax-injected: yes"
    assert headers["x-vmx-correlation-id"] == "c1x-injected-corr: yes"
    assert headers["x-vmx-metadata-evil--x-injected-key--1"] == "v"


async def test_metadata_control_and_non_latin1_characters_are_echoed_safely(gw: VmxProcess, http: aiohttp.ClientSession) -> None:
    """Control characters are stripped from echoed headers and non-Latin-1 text does not crash the response."""
    envelope = {"correlationId": "日本\x01", "metadata": {"ctl": "a\x01b\x7fc\x1bd", "jp": "日本語", "tab": "a\tb"}}
    for endpoint in (CHAT, ANTHROPIC):
        status, headers, body = await post(http, gw.base_url() + endpoint, {**GOOD[endpoint], "vmx": envelope})
        assert status == 200, body
        assert headers["x-vmx-metadata-ctl"] == "abcd"
        assert headers["x-vmx-metadata-jp"] == "日本語"  # aiohttp reads header bytes as UTF-8
        assert headers["x-vmx-metadata-tab"] == "a\tb"
        assert headers["x-vmx-correlation-id"] == "日本"
    # The same characters in an error answer (headers are echoed there too).
    status, headers, body = await post(http, gw.base_url() + CHAT, {**GOOD[CHAT], "model": "nope", "vmx": envelope})
    assert status == 404
    assert headers["x-vmx-metadata-jp"] == "日本語"
    await assert_still_serving(http, gw)


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/v1/completion/acme/nowhere" + CHAT, GOOD[CHAT], {"authorization": f"Bearer {KEY}"}, 404),
        ("/v1/completion/acme/prod" + CHAT, GOOD[CHAT], {}, 401),
        ("/v1/completion/acme/prod" + CHAT, {"model": "chat", "pad": "x" * 70_000}, {"authorization": f"Bearer {KEY}"}, 413),
    ],
)
async def test_refusals_before_the_pipeline_still_carry_a_request_id_and_a_log_line(
    gw: VmxProcess, path: str, body: Any, headers: dict[str, str], status: int
) -> None:
    """401/404/413 decided by the server before the pipeline get x-vmx-request-id and a log line."""
    async with aiohttp.ClientSession() as http, http.post(gw.url + path, json=body, headers=headers) as resp:
        assert resp.status == status
        request_id = resp.headers["x-vmx-request-id"]
    line = await gw.wait_for_output(lambda line: request_id in line)
    assert json.loads(line)["status"] == status
