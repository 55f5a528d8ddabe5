"""A fake AWS Bedrock runtime on a loopback port that checks every request's SigV4 signature
with botocore and answers InvokeModel / InvokeModelWithResponseStream like Bedrock does:
JSON, or binary event-stream frames whose ``chunk`` payloads carry Anthropic events.

Answers come from the fake Anthropic (``anthropic_upstream.answer_blocks``).  Model
``throttle`` streams a ``throttlingException`` frame after the first content.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.fakes.anthropic_upstream import stream_events, whole_message
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
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})")


class FakeBedrock:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/model/{model}/invoke", self._invoke)
        app.router.add_post("/model/{model}/invoke-with-response-stream", self._invoke_stream)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def verify(self, request: web.Request, raw: bytes) -> str | None:
        """Why the signature is wrong, or ``None`` when botocore computes the same one."""
        m = _AUTH.fullmatch(request.headers.get("Authorization", ""))
        if m is None:
            return "missing or malformed Authorization"
        key, _day, region, service, signed, signature = m.groups()
        if (key, region, service) != (ACCESS_KEY, REGION, "bedrock"):
            return f"wrong credential scope {key}/{region}/{service}"
        headers = {name: request.headers[name] for name in signed.split(";") if name != "host"}
        aws = AWSRequest(method=request.method, url=self.base_url + request.raw_path, data=raw, headers=headers)
        aws.context["timestamp"] = request.headers.get("X-Amz-Date", "")
        auth = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "bedrock", REGION)
        expected = auth.signature(auth.string_to_sign(aws, auth.canonical_request(aws)), aws)
        return None if expected == signature else "The request signature we calculated does not match the signature you provided"

    async def _check(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        raw = await request.read()
        body = json.loads(raw)
        self.requests.append({"path": request.raw_path, "headers": dict(request.headers), "body": body})
        problem = self.verify(request, raw)
        if problem is not None:
            return body, web.json_response({"message": problem}, status=403, headers={"x-amzn-ErrorType": "InvalidSignatureException"})
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
