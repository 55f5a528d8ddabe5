"""A real KMS endpoint for the tests: moto's server mode on a loopback port.

The server speaks the KMS wire protocol over HTTP, so boto3 (and vmx's aws-kms cipher) talk to
it exactly as to AWS, through ``encryption.endpoint_url``.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"


@pytest.fixture(scope="session")
def kms_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto server, for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy AWS credentials, so boto3's chain never looks at the machine's own."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def kms_client(endpoint: str) -> object:
    return boto3.client("kms", region_name=REGION, endpoint_url=endpoint)
