"""The `vmx` console script (DESIGN §13), run as a real subprocess."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from vmx_core.config import config_from_dict
from vmx_core.plugins import Plugins

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
_SCRIPT = Path(sys.executable).parent / "vmx"
VMX = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from vmx_server.cli import main; raise SystemExit(main())"]
KEY_FORMAT = re.compile(r"^key: (vmx_[A-Za-z0-9_-]{43})$", re.MULTILINE)


def vmx(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "VMX_"))}
    return subprocess.run([*VMX, *map(str, args)], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)


def test_check_accepts_the_quickstart() -> None:
    """`vmx check` exits 0 on examples/quickstart.yaml and says what it found."""
    result = vmx("check", "--config", QUICKSTART)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:") and "1 workspace(s)" in result.stdout


def test_check_rejects_a_bad_config_naming_each_path(tmp_path: Path) -> None:
    """`vmx check` exits non-zero on a bad config and prints the path of every defect."""
    raw = yaml.safe_load(QUICKSTART.read_text())
    env = raw["workspaces"]["acme"]["environments"]["prod"]
    env["connections"]["local-mock"]["options"]["bogus"] = 1
    env["resources"]["chat"]["model"]["connection"] = "nowhere"
    env["api_keys"]["quickstart"]["capacity"] = [{"period": "fortnight", "requests": 1}]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = vmx("check", "--config", bad)
    assert result.returncode != 0
    prefix = "$.workspaces.acme.environments.prod"
    # Structure errors are all reported together; reference checks run once structure is sound.
    assert f"{prefix}.api_keys.quickstart.capacity[0].period" in result.stderr
    assert result.stdout == ""
    del env["api_keys"]["quickstart"]["capacity"]
    bad.write_text(yaml.safe_dump(raw))
    result = vmx("check", "--config", bad)
    assert result.returncode != 0
    assert f"{prefix}.connections.local-mock.options.bogus" in result.stderr
    assert f"{prefix}.resources.chat.model.connection" in result.stderr


def test_check_reports_unset_variables_and_missing_files(tmp_path: Path) -> None:
    """An unset `${VAR}` names its path; a missing file is an error, not a traceback."""
    cfg = tmp_path / "vmx.yaml"
    cfg.write_text(QUICKSTART.read_text().replace("${OPENAI_API_KEY:-}", "${OPENAI_API_KEY}"))
    result = vmx("check", "--config", cfg)
    assert result.returncode != 0
    assert "$.workspaces.acme.environments.prod.connections.openai-main.credentials.api_key" in result.stderr
    missing = vmx("check", "--config", tmp_path / "nope.yaml")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr and "nope.yaml" in missing.stderr


def test_keys_create_prints_a_key_and_its_hash() -> None:
    """`vmx keys create` prints a `vmx_` + 43-character key and a key_sha256 equal to its SHA-256."""
    result = vmx("keys", "create", "--config", QUICKSTART, "--workspace", "acme", "--environment", "prod",
                 "--name", "app2", "--resources", "chat,gpt")
    assert result.returncode == 0, result.stderr
    (key,) = KEY_FORMAT.findall(result.stdout)
    (digest,) = re.findall(r'key_sha256: "([0-9a-f]{64})"', result.stdout)
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert key not in result.stdout.split("key_sha256", 1)[1]


def test_keys_create_snippet_loads_as_config() -> None:
    """The printed snippet is valid YAML that a config accepts, even for `*` and a name like `yes`."""
    result = vmx("keys", "create", "--config", QUICKSTART, "--workspace", "acme", "--environment", "prod",
                 "--name", "yes", "--resources", "*")
    assert result.returncode == 0, result.stderr
    snippet = yaml.safe_load(result.stdout.split("config:\n", 1)[1])
    (key,) = KEY_FORMAT.findall(result.stdout)
    assert snippet == {"api_keys": {"yes": {"key_sha256": hashlib.sha256(key.encode()).hexdigest(), "resources": ["*"]}}}
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["workspaces"]["acme"]["environments"]["prod"]["api_keys"].update(snippet["api_keys"])
    config = config_from_dict(raw, environ={}, providers=Plugins.load().providers())
    assert config.workspaces["acme"].environments["prod"].api_keys["yes"].resources == ["*"]


def test_keys_create_rejects_unknown_scope() -> None:
    """An unknown workspace, environment or resource, or an invalid name, fails without printing a key."""
    base = ["keys", "create", "--config", QUICKSTART, "--name", "app2"]
    cases = [
        (["--workspace", "nope", "--environment", "prod", "--resources", "chat"], "nope/prod"),
        (["--workspace", "acme", "--environment", "dev", "--resources", "chat"], "acme/dev"),
        (["--workspace", "acme", "--environment", "prod", "--resources", "chat,ghost"], "ghost"),
    ]
    for extra, mention in cases:
        result = vmx(*base, *extra)
        assert result.returncode != 0, extra
        assert mention in result.stderr
        assert not KEY_FORMAT.search(result.stdout)
    bad_name = vmx("keys", "create", "--config", QUICKSTART, "--workspace", "acme", "--environment", "prod",
                   "--name", "my key", "--resources", "chat")
    assert bad_name.returncode != 0 and "my key" in bad_name.stderr and "vmx_" not in bad_name.stdout
