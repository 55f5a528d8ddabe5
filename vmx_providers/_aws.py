"""AWS request signing for the Bedrock providers: botocore's SigV4 over the endpoint's pooled client.

boto3 is synchronous, so it never runs on the request path: credentials are resolved once,
through boto3's usual chain (environment, shared files, SSO, container and instance roles),
in a worker thread; an optional ``role_arn`` is assumed with STS (at the endpoint botocore
picks: the region's, or ``AWS_ENDPOINT_URL_STS``) and refreshed, again in a thread, once
fewer than ``REFRESH_MARGIN`` seconds are left.  Only the signing itself -- pure CPU -- runs in
the loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from attrs import define, field

from vmx_core.errors import UpstreamConnectionError
from vmx_core.http import Response
from vmx_providers._http import HttpClient
from vmx_providers.openai import NotConfigured

#: Refresh assumed-role credentials this many seconds before they expire.
REFRESH_MARGIN = 300
#: Below this many seconds left, a failed refresh fails the request; above it, the current
#: credentials are used while each later request retries the refresh.
MANDATORY_MARGIN = 60


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@define
class AwsSigner:
    region: str
    service: str = "bedrock"
    role_arn: str | None = None
    #: The time assumed-role credentials are checked against (tests move it on).
    clock: Callable[[], dt.datetime] = utc_now
    _credentials: Any = field(default=None, init=False)
    _lock: asyncio.Lock = field(factory=asyncio.Lock, init=False)

    async def _frozen(self) -> Any:
        import botocore.exceptions

        try:
            async with self._lock:
                if self._credentials is None:
                    self._credentials = await asyncio.to_thread(self._resolve)
                creds = self._credentials
                # Refreshable credentials refresh themselves -- synchronously, over the
                # network -- inside get_frozen_credentials once they are within their own
                # advisory margin, which is what refresh_needed() checks with no argument:
                # then the call goes to a thread, never into the loop.
                refresh_needed = getattr(creds, "refresh_needed", None)
                if refresh_needed is not None and refresh_needed():
                    return await asyncio.to_thread(creds.get_frozen_credentials)
            return creds.get_frozen_credentials()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            # The class name says what failed (no credentials, STS refused the role...);
            # botocore's messages never include secrets, but the class is enough.
            raise UpstreamConnectionError(f"AWS credentials could not be resolved: {type(exc).__name__}") from None

    def _resolve(self) -> Any:
        import botocore.session
        from botocore.credentials import RefreshableCredentials

        session = botocore.session.get_session()
        base = session.get_credentials()
        if base is None:
            raise NotConfigured("no AWS credentials in the default chain (environment, shared files, roles)")
        if not self.role_arn:
            return base
        first = self._assume(session, self.role_arn)
        return RefreshableCredentials(
            first["access_key"], first["secret_key"], first["token"], dt.datetime.fromisoformat(first["expiry_time"]),
            refresh_using=lambda: self._assume(session, self.role_arn or ""), method="assume-role",
            time_fetcher=self.clock, advisory_timeout=REFRESH_MARGIN, mandatory_timeout=MANDATORY_MARGIN,
        )

    def _assume(self, session: Any, role_arn: str) -> dict[str, str]:
        """STS AssumeRole with the chain's credentials, in botocore's refresh metadata form."""
        sts = session.create_client("sts", region_name=self.region)
        c = sts.assume_role(RoleArn=role_arn, RoleSessionName="vmx-gateway")["Credentials"]
        return {"access_key": c["AccessKeyId"], "secret_key": c["SecretAccessKey"],
                "token": c["SessionToken"], "expiry_time": c["Expiration"].isoformat()}

    async def sign(self, url: str, body: bytes, headers: Mapping[str, str]) -> dict[str, str]:
        """The headers of a signed ``POST url`` with ``body`` (``Authorization``,
        ``X-Amz-Date`` and, for temporary credentials, ``X-Amz-Security-Token``)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        creds = await self._frozen()
        request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
        SigV4Auth(creds, self.service, self.region).add_auth(request)
        return dict(request.headers.items())


async def post_signed(
    http: HttpClient, signer: AwsSigner, path: str, body: bytes, headers: Mapping[str, str], timeout: float, stream: bool
) -> Response:
    """POST a signed request and return its 2xx response: read whole, or (``stream``) open for
    the caller to iterate and release.

    ``path`` is already URL-encoded (model ids hold ``:``): the URL is sent exactly as signed.
    """
    signed = await signer.sign(http.base_url + path, body, headers)
    # botocore signs the host header it derives from the URL: the client sends its own.
    signed.pop("host", None)
    signed.pop("Host", None)
    resp = await http.client().request("POST", path, body, signed, timeout=timeout, stream=stream)
    if resp.status >= 300:
        try:
            raise await http.http_error(resp)
        finally:
            resp.close()
    return resp
