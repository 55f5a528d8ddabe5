"""A real STS endpoint for the tests: moto's server mode on a loopback port, and what it issued.

botocore sends STS calls wherever ``AWS_ENDPOINT_URL_STS`` points, so a gateway (in process or
a ``vmx serve`` child) assumes roles here exactly as it would at AWS.  The server runs in this
process, so the tests read moto's own record of every AssumeRole it answered: how many calls
there were, and the temporary keys the fake Bedrock must accept.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

#: The account of the roles the tests assume (moto takes the account from the role's ARN).
ACCOUNT = "123456789012"


@pytest.fixture(scope="session")
def sts_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto server, for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def new_role() -> str:
    """A role ARN no other test uses, so its AssumeRole calls can be counted alone."""
    return f"arn:aws:iam::{ACCOUNT}:role/vmx-bedrock-{uuid.uuid4().hex[:12]}"


def _issued() -> list[Any]:
    from moto.sts.models import sts_backends

    return list(sts_backends[ACCOUNT]["aws"].assumed_roles)


def assume_role_calls(role_arn: str) -> list[Any]:
    """Every AssumeRole moto answered for ``role_arn``, oldest first (``access_key_id``,
    ``secret_access_key``, ``session_token``, ``expiration``)."""
    return [r for r in _issued() if r.role_arn == role_arn]


def issued_credentials(key: str) -> tuple[str, str | None] | None:
    """(secret, session token) of temporary credentials moto issued, as the fake Bedrock's
    ``credentials`` lookup: any other key, the chain's base key included, is refused."""
    for role in _issued():
        if role.access_key_id == key:
            return role.secret_access_key, role.session_token
    return None
