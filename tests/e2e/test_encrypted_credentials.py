"""`vmx encrypt` / `vmx rotate-key` and a real `vmx serve` using encrypted credentials."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.conftest import KEY
from tests.e2e.conftest import UPSTREAM_SECRET, e2e_config
from tests.fakes.openai_upstream import FakeOpenAI

VMX = [sys.executable, "-c", "from vmx_server.cli import main; raise SystemExit(main())"]


async def vmx(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *VMX, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})},
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate(stdin.encode())
    return proc.returncode or 0, out.decode(), err.decode()


def encrypted_config(upstream: FakeOpenAI, value: str) -> dict[str, Any]:
    config = e2e_config(upstream)
    config["encryption"] = {"provider": "libsodium", "key": "${VMX_ENCRYPTION_KEY}"}
    config["workspaces"]["acme"]["environments"]["prod"]["connections"]["up"]["credentials"]["api_key"] = value
    return config


async def test_encrypted_key_reaches_upstream_and_nothing_else(upstream: FakeOpenAI, vmx_factory: Any,
                                                               tmp_path: Path) -> None:
    """A credential from `vmx encrypt` is decrypted for the upstream call only: not in the log,
    not in /-/plugins, not in the config file."""
    code, key, _ = await vmx("encrypt", "--generate-key")
    assert code == 0
    env = {"VMX_ENCRYPTION_KEY": key.strip()}
    path = tmp_path / "vmx.yaml"
    path.write_text(yaml.safe_dump(encrypted_config(upstream, "placeholder")))
    code, value, err = await vmx("encrypt", "--config", str(path), "--workspace", "acme", "--environment", "prod",
                                 "--connection", "up", stdin=UPSTREAM_SECRET + "\n", env=env)
    assert code == 0, err
    value = value.strip()
    assert value.startswith("vmx:enc:v1:libsodium:") and UPSTREAM_SECRET not in value
    proc = await vmx_factory(encrypted_config(upstream, value), env)
    async with aiohttp.ClientSession() as http:
        async with http.post(proc.base_url() + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                             json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]}) as resp:
            assert resp.status == 200
        async with http.get(proc.url + "/-/plugins") as resp:
            plugins = await resp.text()
    assert upstream.requests[-1]["headers"]["Authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert "vmx.ciphers" in plugins and UPSTREAM_SECRET not in plugins
    await proc.stop()
    assert UPSTREAM_SECRET not in proc.output() and UPSTREAM_SECRET not in proc.config_path.read_text()


async def test_rotate_key_rewrites_the_file_so_only_the_new_key_is_needed(upstream: FakeOpenAI,
                                                                          tmp_path: Path) -> None:
    """`vmx rotate-key --write` re-seals under the new key, keeps comments, and `vmx check`
    then passes with the old key gone (and fails with only the old key)."""
    _, old, _ = await vmx("encrypt", "--generate-key")
    _, new, _ = await vmx("encrypt", "--generate-key")
    old, new = old.strip(), new.strip()
    path = tmp_path / "vmx.yaml"
    config = encrypted_config(upstream, "placeholder")
    path.write_text(yaml.safe_dump(config))
    _, value, _ = await vmx("encrypt", "--config", str(path), "--workspace", "acme", "--environment", "prod",
                           "--connection", "up", stdin=UPSTREAM_SECRET, env={"VMX_ENCRYPTION_KEY": old})
    config = encrypted_config(upstream, value.strip())
    config["encryption"]["previous_keys"] = ["${VMX_OLD_KEY}"]
    path.write_text("# operator's comment\n" + yaml.safe_dump(config))
    both = {"VMX_ENCRYPTION_KEY": new, "VMX_OLD_KEY": old}
    code, out, err = await vmx("rotate-key", "--config", str(path), "--write", env=both)
    assert code == 0, err
    assert "re-encrypted 1 credential(s)" in out and UPSTREAM_SECRET not in out
    text = path.read_text()
    assert text.startswith("# operator's comment") and value.strip() not in text
    config = yaml.safe_load(text)
    config["encryption"]["previous_keys"] = []
    path.write_text(yaml.safe_dump(config))
    code, out, err = await vmx("check", "--config", str(path), env={"VMX_ENCRYPTION_KEY": new})
    assert code == 0, err
    code, out, err = await vmx("check", "--config", str(path), env={"VMX_ENCRYPTION_KEY": old})
    assert code == 2 and "credentials.api_key: libsodium: the value was sealed with a key that is not configured" in err
