"""Installing the peers into git-ignored folders under ``benchmarks/peers/``: they are what
vmx is measured against, never project dependencies.  Each install runs once (a marker file
records it), so a second ``make bench`` starts at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PEERS = Path(__file__).resolve().parents[1] / "peers"
PORTKEY_VERSION = "1.15.2"
LITELLM_VERSION = "1.110.2"
# `litellm[proxy]` pins packages the registry does not have, so the proxy's requirements are
# installed by name instead (the list from issue 9).
LITELLM_PROXY_REQUIREMENTS = [
    "fastapi", "uvicorn", "gunicorn", "orjson", "backoff", "rq", "apscheduler", "fastapi-sso", "pyjwt",
    "python-multipart", "cryptography", "pynacl", "websockets", "azure-identity", "azure-storage-blob", "mcp",
    "httpx2", "restrictedpython", "litellm-proxy-extras", "litellm-enterprise", "semver", "Expression", "soundfile",
    # Not in the list, but the proxy's uvicorn is started with loop="uvloop".
    "uvloop",
]


def portkey_dir() -> Path:
    return PEERS / "portkey"


def portkey_server() -> Path:
    return portkey_dir() / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def litellm_bin() -> Path:
    return PEERS / "litellm" / "venv" / "bin" / "litellm"


def install_portkey() -> None:
    marker = portkey_dir() / f".installed-{PORTKEY_VERSION}"
    if marker.exists():
        return
    portkey_dir().mkdir(parents=True, exist_ok=True)
    (portkey_dir() / "package.json").write_text('{"private": true}\n')
    _run(["npm", "install", "--no-audit", "--no-fund", f"@portkey-ai/gateway@{PORTKEY_VERSION}"], portkey_dir())
    marker.touch()


def install_litellm() -> None:
    root = PEERS / "litellm"
    marker = root / f".installed-{LITELLM_VERSION}"
    if marker.exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", str(root / "venv")], root)
    pip = str(root / "venv" / "bin" / "pip")
    _run([pip, "install", "--quiet", f"litellm=={LITELLM_VERSION}", *LITELLM_PROXY_REQUIREMENTS], root)
    marker.touch()


def _run(argv: list[str], cwd: Path) -> None:
    print(f"installing: {' '.join(argv[:4])} ...", flush=True)
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    install_portkey()
    install_litellm()


if __name__ == "__main__":
    main()
