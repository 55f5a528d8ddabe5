"""A third-party provider package, installed for real with pip, used by a real ``vmx serve``.

``examples/vmx-provider-echo`` is a separate distribution with its own pyproject and an entry
point in the ``vmx`` group.  It is installed into a temporary directory (never into the venv)
and reaches the gateway process only through ``PYTHONPATH``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import yaml

from tests.fakes.server import VmxProcess

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "examples" / "vmx-provider-echo"
KEY = "vmx_third_party_plugin_test_key_00000000000"
CONNECTION_PATH = "$.workspaces.acme.environments.prod.connections.mirror"


def echo_config(**options: Any) -> dict[str, Any]:
    return {
        "workspaces": {
            "acme": {
                "environments": {
                    "prod": {
                        "connections": {"mirror": {"provider": "echo", "options": options}},
                        "resources": {"reverse": {"model": {"connection": "mirror", "model": "echo-1"}}},
                        "api_keys": {"dev": {"key": KEY, "resources": ["reverse"]}},
                    }
                }
            }
        }
    }


def _setuptools_builds_wheels_alone() -> bool:
    """setuptools >= 70.1 has bdist_wheel built in; older ones need the ``wheel`` package."""
    version = importlib.metadata.version("setuptools")
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def pip_install(target: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in examples/.
    source = workdir / "vmx-provider-echo"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(source)]
    if _setuptools_builds_wheels_alone():
        # Offline and fast: build with the venv's own setuptools.
        cmd.insert(4, "--no-build-isolation")
    # Otherwise (a fresh venv has setuptools 65 and no `wheel`) pip builds in an isolated
    # environment from the configured index, which may be a local mirror.
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def echo_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory pip installed vmx-provider-echo into."""
    workdir = tmp_path_factory.mktemp("echo-build")
    target = tmp_path_factory.mktemp("echo-site")
    result = pip_install(target, workdir)
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    return target


def plugin_env(site: Path, **extra: str) -> dict[str, str]:
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths), **extra}


@pytest.fixture
async def echo_vmx(echo_site: Path, tmp_path: Path) -> AsyncIterator[VmxProcess]:
    proc = VmxProcess(echo_config(prefix="echo: ", chunk_size=3), tmp_path, plugin_env(echo_site))
    await proc.start()
    yield proc
    await proc.stop()


def vmx_check(config: dict[str, Any], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "check.yaml"
    path.write_text(yaml.safe_dump(config))
    vmx = Path(sys.executable).with_name("vmx")
    return subprocess.run(
        [str(vmx), "check", "--config", str(path)],
        capture_output=True, text=True, timeout=60, env={**os.environ, **env}, check=False,
    )


def test_package_installs_as_a_distribution_with_a_vmx_entry_point(echo_site: Path) -> None:
    """pip installs the example as its own distribution whose entry point is in group ``vmx``."""
    dists = list(importlib.metadata.distributions(path=[str(echo_site)]))
    assert [d.metadata["Name"] for d in dists] == ["vmx-provider-echo"]
    eps = [(ep.group, ep.name, ep.value) for ep in dists[0].entry_points]
    assert ("vmx", "echo", "vmx_provider_echo") in eps
    assert (echo_site / "vmx_provider_echo" / "__init__.py").is_file()


async def test_sdk_call_through_installed_plugin_gets_reversed_text(echo_vmx: VmxProcess) -> None:
    """A config naming ``provider: echo`` answers the SDK with the reversed message and prefix."""
    client = openai.AsyncOpenAI(base_url=echo_vmx.base_url(), api_key=KEY, max_retries=0)
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model="reverse", messages=[{"role": "user", "content": "stressed out"}]
        )
    finally:
        await client.close()
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: tuo desserts"
    assert raw.headers["x-vmx-provider"] == "echo"
    assert raw.headers["x-vmx-model"] == "echo-1"


async def test_sdk_stream_through_installed_plugin_reassembles_reversed_text(echo_vmx: VmxProcess) -> None:
    """The plugin's SSE stream reaches the SDK chunk by chunk and spells the reversed text."""
    client = openai.AsyncOpenAI(base_url=echo_vmx.base_url(), api_key=KEY, max_retries=0)
    try:
        stream = await client.chat.completions.create(
            model="reverse", messages=[{"role": "user", "content": "drawer"}], stream=True
        )
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    finally:
        await client.close()
    assert "".join(pieces) == "echo: reward"
    assert len([p for p in pieces if p]) >= 3  # chunk_size 3: really streamed, not one blob


async def test_plugins_endpoint_lists_the_installed_plugin(echo_vmx: VmxProcess) -> None:
    """``/-/plugins`` names the ``echo`` plugin, its module, version and hook, and its provider."""
    async with aiohttp.ClientSession() as session, session.get(echo_vmx.url + "/-/plugins") as resp:
        assert resp.status == 200
        data = await resp.json()
    echo = [p for p in data["plugins"] if p["name"] == "echo"]
    assert echo == [
        {"name": "echo", "module": "vmx_provider_echo", "version": "0.1.0", "hooks": ["vmx_register_providers"]}
    ]
    assert "echo" in data["providers"]


def test_check_accepts_the_plugin_provider(echo_site: Path, tmp_path: Path) -> None:
    """With the package on the path, ``vmx check`` accepts a connection with ``provider: echo``."""
    result = vmx_check(echo_config(prefix=">"), tmp_path, plugin_env(echo_site))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:")


def test_disabled_plugin_makes_check_fail_naming_the_provider_path(echo_site: Path, tmp_path: Path) -> None:
    """``VMX_DISABLE_PLUGINS=echo`` unloads the plugin: ``vmx check`` fails at the provider path."""
    result = vmx_check(echo_config(), tmp_path, plugin_env(echo_site, VMX_DISABLE_PLUGINS="echo"))
    assert result.returncode == 2
    assert f"{CONNECTION_PATH}.provider: unknown provider 'echo'" in result.stderr


def test_plugin_options_type_rejects_unknown_option_with_its_path(echo_site: Path, tmp_path: Path) -> None:
    """The plugin's attrs ``options_type`` makes ``vmx check`` reject an unknown option by path."""
    result = vmx_check(echo_config(prefix=">", colour="blue"), tmp_path, plugin_env(echo_site))
    assert result.returncode == 2
    assert f"{CONNECTION_PATH}.options.colour: unknown key 'colour'" in result.stderr
