"""Instructions per request, counted by callgrind: the one figure a shared, noisy machine repeats.

vmx's completion endpoint (the ASGI app ``vmx serve`` runs, with ``make bench``'s config: key
auth, 3 routing rules, 3 limits on ``memory://``, the SQLite audit sink, the log line) is called
in process, without an HTTP server, against the benchmark's fake upstream over loopback.  After
a warm-up the heap is settled as ``vmx serve`` settles it; then callgrind's counters are zeroed,
``N`` requests run, and the counters are read again, so the figure is those requests alone
(user-space instructions: system calls and cache misses are not in it, so compare it with
itself, commit against commit, and confirm a gain with ``benchmarks/gateway/variants.py``).

Run (from the repository root; valgrind is the Debian package)::

    .venv/bin/python -m benchmarks.instructions            # whole answers, 200 requests
    .venv/bin/python -m benchmarks.instructions --stream   # 20-chunk streams

It re-runs itself under ``valgrind --tool=callgrind`` (about 30 s) and prints instructions per
request.  ``--native N`` runs N requests without valgrind and prints CPU µs per request.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PATH = "/v1/completion/acme/prod/chat/completions"


async def _requests(port: int, stream: bool, count: int, dump: Callable[[], None], slow: bool) -> float:
    from benchmarks.gateway import configs
    from vmx_core import Gateway
    from vmx_core.audit import sqlite
    from vmx_core.config import config_from_dict
    from vmx_server.app import YOUNG_THRESHOLD, create_app

    work = tempfile.mkdtemp(prefix="vmx-instr-")
    cfg = configs.vmx_config(f"http://127.0.0.1:{port}/v1", f"sqlite:///{work}/audit.db", "memory://")
    gateway = Gateway.from_config(config_from_dict(cfg, environ={}))
    app = create_app(gateway)
    body = configs.body("chat", stream, vmx=True)
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
               (b"authorization", b"Bearer " + configs.VMX_KEY.encode()), (b"content-length", str(len(body)).encode())]

    async def one() -> None:
        # As hypercorn hands a request to the app: ``receive`` is the ``get`` of a queue it
        # fills (here with the whole body at once; the client never leaves).
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        queue.put_nowait({"type": "http.request", "body": body, "more_body": False})
        receive = queue.get

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] != 200:
                raise RuntimeError(f"status {message['status']}")

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": PATH, "raw_path": PATH.encode(), "query_string": b"", "root_path": "", "headers": headers,
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080)}
        await app(scope, receive, send)

    await gateway.start()
    try:
        if slow:
            # Batches hold as many rows as natively although each request runs ~30x slower.
            for sink in gateway.sinks:
                sink.batch_wait = 0.75  # type: ignore[attr-defined]
            sqlite._CHECKPOINT_EVERY = 30.0
        for _ in range(300):
            await one()
        await asyncio.sleep(0.2)
        gc.collect()
        # As vmx serve settles its heap once started (create_app(settle_heap=True)).
        gc.freeze()
        gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        dump()
        started = time.process_time()
        for _ in range(count):
            await one()
        await asyncio.sleep(1.0 if slow else 0.1)  # the audit rows of these requests are written
        spent = time.process_time() - started
        dump()
        return spent / count
    finally:
        await gateway.aclose()


def _inner(stream: bool, count: int, under_valgrind: bool) -> None:
    import uvloop

    from vmx_server import logging as vmx_logging

    real, sys.stdout = sys.stdout, open(os.devnull, "w")
    try:
        vmx_logging.configure("info")  # the log line is written (to /dev/null), as under load
    finally:
        sys.stdout = real

    def dump() -> None:
        return None

    if under_valgrind:
        # callgrind_control dumps (and zeroes) this process's counters; started before the
        # measured loop so that no fork happens inside it.
        helper = subprocess.Popen(
            ["sh", "-c", f"read a; callgrind_control -d {os.getpid()} >/dev/null; echo; read b; callgrind_control -d {os.getpid()} >/dev/null; echo"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )

        def dump() -> None:
            assert helper.stdin is not None and helper.stdout is not None
            helper.stdin.write(b"x\n")
            helper.stdin.flush()
            helper.stdout.readline()

    from benchmarks.gateway.targets import free_port

    port = free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "benchmarks/gateway/upstream.py"), "--port", str(port)])
    try:
        time.sleep(0.5)
        per_request = uvloop.run(_requests(port, stream, count, dump, under_valgrind))
    finally:
        upstream.kill()
        upstream.wait()
    print(f"cpu_us_per_request {per_request * 1e6:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--count", type=int, default=200, help="measured requests")
    parser.add_argument("--native", type=int, metavar="N", help="run N requests without valgrind; print CPU µs/request")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        _inner(args.stream, args.count, under_valgrind=True)
        return
    if args.native:
        _inner(args.stream, args.native, under_valgrind=False)
        return
    with tempfile.TemporaryDirectory(prefix="vmx-callgrind-") as tmp:
        out = Path(tmp) / "cg.out"
        argv = [sys.executable, "-m", "benchmarks.instructions", "--inner", "--count", str(args.count)]
        if args.stream:
            argv.append("--stream")
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
            cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"}, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # Dump 1 is start-up and warm-up, dump 2 the measured requests, the rest shutdown.
        text = (Path(f"{out}.2")).read_text()
        total = int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1))  # type: ignore[union-attr]
    kind = "stream" if args.stream else "whole"
    print(f"{kind}: {total / args.count / 1000:,.1f}k instructions per request ({args.count} requests)")


if __name__ == "__main__":
    main()
