"""`vmx_core` is a library: importing it must not pull in the server stack (DESIGN Part II)."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("starlette", "hypercorn", "vmx_server")
# Imports each module in turn in a fresh interpreter and reports, after each one, which
# forbidden top-level packages are in sys.modules (which only grows, so the first step that
# shows one is the culprit).
PROBE = """
import importlib, json, sys
report = {}
for name in sys.argv[1:]:
    importlib.import_module(name)
    report[name] = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
print(json.dumps(report))
"""


def _probe(*modules: str) -> dict[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE % (FORBIDDEN,), *modules], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_core_imports_no_server_modules() -> None:
    """Importing vmx_core, vmx_core.gateway and vmx_core.pipeline loads neither starlette, hypercorn nor vmx_server."""
    report = _probe("vmx_core", "vmx_core.gateway", "vmx_core.pipeline")
    assert report == {"vmx_core": [], "vmx_core.gateway": [], "vmx_core.pipeline": []}


def test_probe_detects_the_server_stack() -> None:
    """The probe itself works: importing vmx_server.app does show starlette and vmx_server."""
    report = _probe("vmx_core", "vmx_server.app")
    assert report["vmx_core"] == []
    assert {"starlette", "vmx_server"} <= set(report["vmx_server.app"])


def test_core_uses_the_opentelemetry_api_only() -> None:
    """vmx_core records through opentelemetry-api; importing it never loads the SDK."""
    code = "import sys, vmx_core.gateway, vmx_core.telemetry; print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_the_runtime_needs_no_aiohttp() -> None:
    """The server, every built-in provider and OIDC run without aiohttp (a test and example
    dependency only): upstream calls go through vmx_core.http."""
    code = (
        "import sys, vmx_server.app, vmx_server.cli, vmx_providers.openai, vmx_providers.anthropic, "
        "vmx_providers.bedrock, vmx_core.security.oidc; print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
