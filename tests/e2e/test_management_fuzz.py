"""Schemathesis against ``/openapi.json`` of a real ``vmx serve`` (Postgres config and audit
stores), with the admin token: every management, audit and usage route, valid and invalid
requests, no 5xx and no answer outside the documented schemas and statuses."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import schemathesis
from attrs import define
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.conftest import base_config
from tests.fakes.server import VmxProcess
from tests.services.postgres import PostgresServer, postgres_server  # noqa: F401 (fixture)
from vmx_core.config import config_from_dict
from vmx_core.plugins import Plugins
from vmx_core.security.sodium import generate_key
from vmx_core.store.tools import import_file
from vmx_server.openapi import openapi_document

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN = "fuzz-admin-token-0123456789abcdef"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]
#: ``VMX_FUZZ_SCALE=N`` multiplies the examples and the time budget and draws new examples on
#: every run; by default every run tries the same examples, so a failure reproduces.
SCALE = int(os.environ.get("VMX_FUZZ_SCALE", "1"))
#: Examples per operation and mode, and the wall-clock share of one operation (both modes): the
#: 39 operations stay under a minute even on a loaded machine, and run every example otherwise.
EXAMPLES = {GenerationMode.POSITIVE: 14 * SCALE, GenerationMode.NEGATIVE: 10 * SCALE}
MIN_EXAMPLES = 5
OPERATION_BUDGET_S = 1.2 * SCALE
#: Path parameters that exist, used for half of the requests whose path is valid, so bodies are
#: judged by real objects (DELETE keeps its generated {name}: the fuzzer must not delete the world
#: it explores).
REAL = {"workspace": "acme", "environment": "prod"}
REAL_NAMES = {"workspace": "acme", "environment": "prod", "ai-connection": "m", "ai-resource": "chat",
              "api-key": "app"}

OPERATIONS = sorted((path, method.upper()) for path, ops in openapi_document()["paths"].items() for method in ops
                    if path.startswith("/v1/") and not path.startswith("/v1/completion/"))


@define
class Fuzzed:
    proc: VmxProcess
    schema: OpenApiSchema


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzzed(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
                 ) -> AsyncIterator[Fuzzed]:
    """`vmx serve` on a Postgres config store seeded with acme/prod, and its loaded schema."""
    if not postgres_server.running:
        postgres_server.start()
    raw = base_config()
    raw["storage"] = {"audit": postgres_server.create_database(), "config": "database"}
    raw["encryption"] = {"provider": "libsodium", "key": generate_key()}
    raw["limits"] = {"max_body_bytes": 65536}
    config = config_from_dict(raw, environ={})
    await import_file(config, config, Plugins.load())
    proc = VmxProcess(raw, Path(tmp_path_factory.mktemp("fuzz")), {"VMX_ADMIN_TOKEN": ADMIN})
    await proc.start()
    async with aiohttp.ClientSession() as http, http.get(proc.url + "/openapi.json") as resp:
        doc = await resp.json()
    yield Fuzzed(proc, schemathesis.openapi.from_dict(doc))
    await proc.stop()
    assert "unhandled_error" not in proc.output()


def fuzz(fuzzed: Fuzzed, path: str, method: str) -> dict[GenerationMode, int]:
    """Run both generation modes against one operation; how many examples each ran."""
    started, ran = time.monotonic(), dict.fromkeys(EXAMPLES, 0)
    for mode in EXAMPLES:
        fuzz_mode(fuzzed, path, method, mode, lambda: time.monotonic() - started, ran)
    return ran


def fuzz_mode(fuzzed: Fuzzed, path: str, method: str, mode: GenerationMode, elapsed: Callable[[], float],
              ran: dict[GenerationMode, int]) -> None:
    operation = fuzzed.schema[path][method]
    kind = path.split("/")[2]

    @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans())
    @settings(max_examples=EXAMPLES[mode], deadline=None, database=None, phases=[Phase.generate],
              derandomize=SCALE == 1, suppress_health_check=list(HealthCheck))
    def run(case: Any, real: bool) -> None:
        if elapsed() > OPERATION_BUDGET_S and ran[mode] >= MIN_EXAMPLES:
            return  # over this operation's share of the time budget: the rest are no-ops
        ran[mode] += 1
        params = case.path_parameters
        path_mode = case.meta.components.get(ParameterLocation.PATH) if case.meta else None
        if real and params and (path_mode is None or path_mode.mode is GenerationMode.POSITIVE):
            params.update({k: v for k, v in REAL.items() if k in params})
            if "name" in params and method != "DELETE" and kind in REAL_NAMES:
                params["name"] = REAL_NAMES[kind]
        case.call_and_validate(base_url=fuzzed.proc.url, headers={"Authorization": f"Bearer {ADMIN}"},
                               checks=CHECKS)

    run()


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
async def test_fuzzing_finds_no_server_error_and_no_schema_violation(fuzzed: Fuzzed, path: str, method: str) -> None:
    """Generated valid and invalid requests get documented statuses and schema-valid answers, never a 5xx."""
    ran = await asyncio.to_thread(fuzz, fuzzed, path, method)
    assert all(n >= MIN_EXAMPLES for n in ran.values()), ran


async def test_every_management_route_is_fuzzed() -> None:
    """The fuzzed operations are the 37 management routes plus the audit, payload and usage APIs."""
    assert len(OPERATIONS) == 7 * 5 + 2 + 3  # 7 kinds x CRUD, pool GET/PUT, audit, payload, usage


async def test_the_usage_schema_names_exactly_the_keys_the_parser_takes() -> None:
    """The documented usage query and the parser agree on its top-level keys."""
    from vmx_core.audit.query import USAGE_KEYS

    schemas = openapi_document()["components"]["schemas"]
    assert set(schemas["UsageQuery"]["properties"]) == USAGE_KEYS


_RESOURCE = {"model": {"connection": "m", "model": "mock-1"}}
#: Requests the fuzzer answered wrongly before they were fixed: (method, path, body, headers) ->
#: (status, the error's param).
FOUND = [
    ("PUT", "/v1/workspace/acme", {}, {"If-Match": "soon"}, 400, "If-Match"),  # was a 412
    ("POST", "/v1/ai-resource/acme/prod", {"name": "x", "description": 5, **_RESOURCE}, {}, 400, "$.description"),
    ("POST", "/v1/ai-resource/acme/prod", {"name": "x", "model": {"connection": "m", "model": 4}}, {}, 400,
     "$.model.model"),
    ("POST", "/v1/ai-resource/acme/prod", {"name": "x", "description": "a\x00b", **_RESOURCE}, {}, 400,
     "$.description"),  # was a 503 from Postgres
    ("POST", "/v1/ai-resource/acme/prod", {"name": "x", **_RESOURCE, "model": {**_RESOURCE["model"],
     "default_args": {"k\x00": 1}}}, {}, 400, "$.model.default_args.k\\u0000"),
    ("GET", "/v1/user/a%00b", None, {}, 404, None),  # was a 503 from Postgres
    ("GET", "/v1/request-audit/acme/prod?resource=a%00b&status=200&status_code=500", None, {}, 400, "status"),
    ("POST", "/v1/request-usage/acme/prod", {"metrics": {"requests": "sum"}, "agg": {"cost": "bogus"}}, {}, 400, "agg"),
    ("POST", "/v1/ai-resource/acme/prod", {"name": "x", "description": "x" * 70_000, **_RESOURCE}, {}, 413, None),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "param"), FOUND,
                         ids=[f"{f[0]} {f[1].split('?')[0]} -> {f[4]} {f[5]}" for f in FOUND])
async def test_what_fuzzing_found_stays_fixed(fuzzed: Fuzzed, method: str, path: str, body: Any,
                                              headers: dict[str, str], status: int, param: str | None) -> None:
    """Each request the fuzzer once got a wrong answer for now gets its documented one."""
    async with aiohttp.ClientSession() as http, http.request(
            method, fuzzed.proc.url + path, json=body, headers={"Authorization": f"Bearer {ADMIN}", **headers}) as resp:
        answer = await resp.json()
    assert (resp.status, answer["error"]["param"]) == (status, param), answer
