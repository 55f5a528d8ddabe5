"""Running a real ``vmx serve`` process on a loopback port for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

_RUNNING = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")


class VmxProcess:
    """``python -m vmx_server --config FILE --port 0``; everything it prints goes to ``log_path``."""

    def __init__(self, config: dict[str, Any], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.config_path = workdir / "vmx.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "vmx.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self._log: list[bytes] = []
        self._pump: asyncio.Task[None] | None = None
        self._new_output = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, workspace: str = "acme", environment: str = "prod") -> str:
        return f"{self.url}/v1/completion/{workspace}/{environment}"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vmx_server", "--config", str(self.config_path), "--port", "0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=self.env,
            cwd=self.config_path.parent,  # relative audit paths land in the test's directory
        )
        assert self.proc.stdout is not None
        # Wait for hypercorn's "Running on" line: it carries the port that port 0 became.
        async with asyncio.timeout(30):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise RuntimeError("vmx serve exited during startup:\n" + b"".join(self._log).decode())
                self._log.append(line)
                m = _RUNNING.search(line)
                if m:
                    self.port = int(m.group(1))
                    break
        self._pump = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self._log.append(line)
            self._new_output.set()

    async def wait_for_output(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> str:
        """The first output line satisfying ``predicate``, awaiting it if not printed yet."""
        seen = 0
        async with asyncio.timeout(timeout):
            while True:
                lines = self._log[seen:]
                seen += len(lines)
                for raw in lines:
                    line = raw.decode("utf-8", "replace")
                    if predicate(line):
                        return line
                self._new_output.clear()
                if seen == len(self._log):
                    await self._new_output.wait()

    def output(self) -> str:
        return b"".join(self._log).decode("utf-8", "replace")

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await self.proc.wait()
        if self._pump is not None:
            await self._pump
        self.log_path.write_text(self.output())
        return code
