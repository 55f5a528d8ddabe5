"""A fake AWS Bedrock runtime on a loopback port that checks every request's SigV4 signature
with botocore and answers like Bedrock does: InvokeModel / InvokeModelWithResponseStream with
JSON or binary event-stream frames whose ``chunk`` payloads carry Anthropic events, and
Converse / ConverseStream with Converse JSON and events.

Answers follow the fake Anthropic's rules (``anthropic_upstream``): thinking when asked, a
tool call when tools are given and no result yet, else an echo.  Model ``throttle`` streams a
``throttlingException`` frame after the first content.

CountTokens (``/model/{id}/count-tokens``) takes either input of the real API -- ``converse``
(the ``ConverseTokensRequest`` members only) or ``invokeModel`` (the InvokeModel body,
base64-encoded as the JSON protocol carries a blob) -- and counts ``token_count``: 7 plus the
words of every text the input holds.  As on AWS, only Claude models (``anthropic.…``) count;
any other model answers the ``ValidationException`` Bedrock gives for it.

Signatures are checked against the static test credentials, or against whatever
``credentials`` resolves an access key id to (the temporary keys an STS fake issued): then the
session token must come, signed, in ``X-Amz-Security-Token``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.fakes.anthropic_upstream import SIGNATURE, TOOL_INPUT, stream_events, whole_message
from tests.fakes.loopback import LoopbackServer
from vmx_providers._eventstream import encode_message

ACCESS_KEY = "AKIAFAKEFAKEFAKE0001"
SECRET_KEY = "fake/SECRET/key/0123456789abcdefghijklmn"
REGION = "eu-west-1"
#: The environment a gateway process needs to find these credentials through boto3's chain.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_CONFIG_FILE": "/nonexistent/vmx-tests",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/vmx-tests",
    "AWS_EC2_METADATA_DISABLED": "true",
}
#: The message Bedrock's CountTokens answers (400 ValidationException) for a model it cannot count.
NOT_COUNTABLE = "The provided model doesn't support counting tokens."
CONVERSE_COUNTED = {"messages", "system", "toolConfig", "additionalModelRequestFields"}
#: Keys whose string values are not text the model reads (roles, block types, versions).
_NOT_TEXT = {"role", "type", "anthropic_version", "format"}
#: An access key id -> (secret, session token or None), or None for a key AWS never issued.
CredentialLookup = Callable[[str], tuple[str, str | None] | None]
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})")


def static_credentials(key: str) -> tuple[str, str | None] | None:
    return (SECRET_KEY, None) if key == ACCESS_KEY else None


class FakeBedrock(LoopbackServer):
    def __init__(self, credentials: CredentialLookup = static_credentials) -> None:
        self.credentials = credentials
        self.requests: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/model/{model}/invoke", self._invoke)
        app.router.add_post("/model/{model}/invoke-with-response-stream", self._invoke_stream)
        app.router.add_post("/model/{model}/converse", self._converse)
        app.router.add_post("/model/{model}/converse-stream", self._converse_stream)
        app.router.add_post("/model/{model}/count-tokens", self._count_tokens)

    def verify(self, request: web.Request, raw: bytes) -> str | None:
        """Why the signature is wrong, or ``None`` when botocore computes the same one."""
        m = _AUTH.fullmatch(request.headers.get("Authorization", ""))
        if m is None:
            return "missing or malformed Authorization"
        key, _day, region, service, signed, signature = m.groups()
        known = self.credentials(key)
        if known is None or (region, service) != (REGION, "bedrock"):
            return f"wrong credential scope {key}/{region}/{service}"
        secret, token = known
        if token is not None and (request.headers.get("X-Amz-Security-Token") != token
                                  or "x-amz-security-token" not in signed.split(";")):
            return "The security token included in the request is invalid"
        headers = {name: request.headers[name] for name in signed.split(";") if name != "host"}
        aws = AWSRequest(method=request.method, url=self.base_url + request.raw_path, data=raw, headers=headers)
        aws.context["timestamp"] = request.headers.get("X-Amz-Date", "")
        auth = SigV4Auth(Credentials(key, secret, token), "bedrock", REGION)
        expected = auth.signature(auth.string_to_sign(aws, auth.canonical_request(aws)), aws)
        return None if expected == signature else "The request signature we calculated does not match the signature you provided"

    async def _check(self, request: web.Request, invoke: bool = True) -> tuple[dict[str, Any], web.Response | None]:
        raw = await request.read()
        body = json.loads(raw)
        self.requests.append({"path": request.raw_path, "headers": dict(request.headers), "body": body})
        problem = self.verify(request, raw)
        if problem is not None:
            return body, web.json_response({"message": problem}, status=403, headers={"x-amzn-ErrorType": "InvalidSignatureException"})
        if not invoke:
            unknown = set(body) - {"messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields"}
            if unknown or not isinstance(body.get("messages"), list):
                return body, web.json_response({"message": f"Malformed input request: {sorted(unknown)}"}, status=400,
                                               headers={"x-amzn-ErrorType": "ValidationException"})
            return body, None
        if body.get("anthropic_version") != "bedrock-2023-05-31" or "model" in body:
            return body, web.json_response({"message": "Malformed input request"}, status=400,
                                           headers={"x-amzn-ErrorType": "ValidationException"})
        return body, None

    async def _invoke(self, request: web.Request) -> web.Response:
        body, refused = await self._check(request)
        if refused is not None:
            return refused
        return web.json_response(whole_message({**body, "model": request.match_info["model"]}))

    async def _invoke_stream(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._check(request)
        if refused is not None:
            return refused
        resp = web.StreamResponse(headers={"content-type": "application/vnd.amazon.eventstream"})
        await resp.prepare(request)
        model = request.match_info["model"]
        for i, (_kind, event) in enumerate(stream_events({**body, "model": model})):
            if model == "throttle" and i == 4:
                await resp.write(encode_message(
                    {":message-type": "exception", ":exception-type": "throttlingException", ":content-type": "application/json"},
                    json.dumps({"message": "Too many requests, please wait before trying again."}).encode()))
                break
            payload = json.dumps({"bytes": base64.b64encode(json.dumps(event).encode()).decode()}).encode()
            await resp.write(encode_message(
                {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, payload))
        await resp.write_eof()
        return resp

    async def _converse(self, request: web.Request) -> web.Response:
        body, refused = await self._check(request, invoke=False)
        if refused is not None:
            return refused
        blocks, stop = converse_answer(body)
        return web.json_response({
            "output": {"message": {"role": "assistant", "content": blocks}}, "stopReason": stop,
            "usage": _usage(blocks), "metrics": {"latencyMs": 5},
        })

    async def _converse_stream(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._check(request, invoke=False)
        if refused is not None:
            return refused
        resp = web.StreamResponse(headers={"content-type": "application/vnd.amazon.eventstream"})
        await resp.prepare(request)
        blocks, stop = converse_answer(body)
        events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
        for i, block in enumerate(blocks):
            if "text" in block:
                events += [("contentBlockDelta", {"contentBlockIndex": i, "delta": {"text": w + " "}}) for w in block["text"].split()]
            elif "toolUse" in block:
                tu = block["toolUse"]
                raw = json.dumps(tu["input"])
                events.append(("contentBlockStart", {"contentBlockIndex": i, "start": {"toolUse": {"toolUseId": tu["toolUseId"], "name": tu["name"]}}}))
                events += [("contentBlockDelta", {"contentBlockIndex": i, "delta": {"toolUse": {"input": p}}}) for p in (raw[:6], raw[6:])]
            else:
                rt = block["reasoningContent"]["reasoningText"]
                events.append(("contentBlockDelta", {"contentBlockIndex": i, "delta": {"reasoningContent": {"text": rt["text"]}}}))
                events.append(("contentBlockDelta", {"contentBlockIndex": i, "delta": {"reasoningContent": {"signature": rt["signature"]}}}))
            events.append(("contentBlockStop", {"contentBlockIndex": i}))
        events.append(("messageStop", {"stopReason": stop}))
        events.append(("metadata", {"usage": _usage(blocks), "metrics": {"latencyMs": 5}}))
        for kind, payload in events:
            await resp.write(encode_message({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                                            json.dumps(payload).encode()))
        await resp.write_eof()
        return resp


    async def _count_tokens(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw)
        self.requests.append({"path": request.raw_path, "headers": dict(request.headers), "body": body})
        problem = self.verify(request, raw)
        if problem is not None:
            return web.json_response({"message": problem}, status=403, headers={"x-amzn-ErrorType": "InvalidSignatureException"})
        given = body.get("input") if set(body) == {"input"} else None
        # A union: exactly one member.
        if not isinstance(given, dict) or len(given) != 1 or not set(given) <= {"converse", "invokeModel"}:
            return _validation("Malformed input request: input must hold exactly one of converse, invokeModel")
        if not request.match_info["model"].startswith("anthropic."):
            return _validation(NOT_COUNTABLE)
        if "converse" in given:
            counted = given["converse"]
            if set(counted) - CONVERSE_COUNTED or not isinstance(counted.get("messages"), list):
                return _validation(f"Malformed input request: {sorted(set(counted) - CONVERSE_COUNTED)}")
        else:
            try:
                counted = json.loads(base64.b64decode(given["invokeModel"]["body"], validate=True))
            except (KeyError, TypeError, ValueError, binascii.Error):
                return _validation("Malformed input request: invokeModel.body is not base64-encoded JSON")
            # What Claude's InvokeModel schema insists on.
            if (counted.get("anthropic_version") != "bedrock-2023-05-31" or "model" in counted
                    or not isinstance(counted.get("max_tokens"), int)):
                return _validation("Malformed input request")
        return web.json_response({"inputTokens": token_count(counted)})


def _validation(message: str) -> web.Response:
    return web.json_response({"message": message}, status=400,
                             headers={"x-amzn-ErrorType": "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"})


def token_count(counted: Any) -> int:
    """The fake's count of a CountTokens input: 7 plus the words of every text in it."""
    def words(value: Any) -> int:
        if isinstance(value, str):
            return len(value.split())
        if isinstance(value, list):
            return sum(words(v) for v in value)
        if isinstance(value, dict):
            return sum(words(v) for k, v in value.items() if k not in _NOT_TEXT)
        return 0
    return 7 + words(counted)


def converse_answer(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The Converse content blocks answering ``body`` and the stop reason."""
    text, has_result = "echo: ", False
    for m in body.get("messages") or []:
        for b in m.get("content") or []:
            if "toolResult" in b:
                has_result = True
                text = "result: " + " ".join(x.get("text", "") for x in b["toolResult"]["content"])
            elif "text" in b and m["role"] == "user":
                text = "echo: " + b["text"]
    blocks: list[dict[str, Any]] = []
    if ((body.get("additionalModelRequestFields") or {}).get("thinking") or {}).get("type") == "enabled":
        blocks.append({"reasoningContent": {"reasoningText": {"text": "Let me think about this.", "signature": SIGNATURE}}})
    tools = (body.get("toolConfig") or {}).get("tools") or []
    if tools and not has_result:
        name = tools[0]["toolSpec"]["name"]
        blocks += [{"text": "Let me check."}, {"toolUse": {"toolUseId": "tooluse_fake01", "name": name, "input": TOOL_INPUT}}]
        return blocks, "tool_use"
    return [*blocks, {"text": text}], "end_turn"


def _usage(blocks: list[dict[str, Any]]) -> dict[str, int]:
    out = sum(len(json.dumps(b).split()) for b in blocks)
    return {"inputTokens": 11, "outputTokens": out, "totalTokens": 16 + out, "cacheReadInputTokens": 3, "cacheWriteInputTokens": 2}
