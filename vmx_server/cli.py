"""The ``vmx`` command (DESIGN §13)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vmx_core.config.loader import load_config
from vmx_core.config.validate import _NAME as _KEY_NAME  # the names a config accepts
from vmx_core.errors import (
    AuditStoreError,
    ConfigError,
    ConfigStoreError,
    CredentialError,
    InvalidRequest,
    PluginError,
)
from vmx_core.plugins import Plugins
from vmx_core.security.apikeys import generate_key, hash_key


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vmx", description="vmx AI gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway (hypercorn)")
    serve.add_argument("--config", required=True)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--log-level", default=os.environ.get("VMX_LOG_LEVEL", "info"))

    check = sub.add_parser("check", help="validate a config file without starting")
    check.add_argument("--config", required=True)

    migrate = sub.add_parser("migrate", help="create or upgrade the audit database schema")
    migrate.add_argument("--config", required=True)

    usage = sub.add_parser("usage", help="print usage from the audit database as a table")
    usage.add_argument("--config", required=True)
    usage.add_argument("--since", default="24h", help="a duration (30m, 24h, 7d, 2w) or an ISO time")
    usage.add_argument("--by", default="resource", help="comma-separated dimensions, e.g. resource,model")
    usage.add_argument("--workspace")
    usage.add_argument("--environment")

    enc = sub.add_parser("encrypt", help="encrypt a credential read on stdin (prints vmx:enc:v1:...)")
    enc.add_argument("--config")
    enc.add_argument("--workspace")
    enc.add_argument("--environment")
    enc.add_argument("--connection")
    enc.add_argument("--generate-key", action="store_true", help="print a new libsodium key instead")

    rot = sub.add_parser("rotate-key", help="re-encrypt every credential under encryption's current key")
    rot.add_argument("--config", required=True)
    rot.add_argument("--write", action="store_true", help="rewrite the config file in place (else print)")

    imp = sub.add_parser("import", help="replace the config store's objects with a config file's")
    imp.add_argument("--config", required=True, help="the gateway's config (storage.config: database)")
    imp.add_argument("--from", dest="source", help="the file to import (default: --config itself)")

    exp = sub.add_parser("export", help="print the config store's objects as a config file")
    exp.add_argument("--config", required=True)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="generate a key; prints it once, with the hash to store")
    create.add_argument("--config", required=True)
    create.add_argument("--workspace", required=True)
    create.add_argument("--environment", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--resources", required=True, help="comma-separated resource names, or *")

    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "check":
            return _check(args)
        if args.command == "migrate":
            return _migrate(args)
        if args.command == "usage":
            return _usage(args)
        if args.command == "encrypt":
            return _encrypt(args)
        if args.command == "rotate-key":
            return _rotate_key(args)
        if args.command == "import":
            return _import(args)
        if args.command == "export":
            return _export(args)
        return _keys_create(args)
    except (ConfigError, PluginError) as exc:
        _print_error(exc)
        return 2
    except InvalidRequest as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (AuditStoreError, CredentialError, ConfigStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _print_error(exc: Exception) -> None:
    if isinstance(exc, ConfigError):
        print("config error:", file=sys.stderr)
        for path, message in exc.errors:
            print(f"  {path}: {message}", file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)


def _check(args: argparse.Namespace) -> int:
    plugins = Plugins.load()
    config = load_config(args.config, providers=plugins.providers(), rule_functions=plugins.rule_functions())
    from vmx_core.security.credentials import Credentials, encrypted_credentials

    if any(True for _ in encrypted_credentials(config)):
        # Open every ciphertext now: a wrong or missing key fails here, not at the first request.
        creds = Credentials(plugins.credential_ciphers())

        async def run() -> None:
            try:
                await creds.decrypt_config(config)
            finally:
                await creds.aclose()

        asyncio.run(run())
    envs = sum(len(ws.environments) for ws in config.workspaces.values())
    resources = sum(len(e.resources) for ws in config.workspaces.values() for e in ws.environments.values())
    print(f"ok: {args.config}: {len(config.workspaces)} workspace(s), {envs} environment(s), {resources} resource(s)")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from vmx_core.audit.store import open_store

    plugins = Plugins.load()
    config = load_config(args.config, providers=plugins.providers(), rule_functions=plugins.rule_functions())
    if config.storage.audit in ("none", ""):
        print("storage.audit is none: nothing to migrate")
        return 0
    store = open_store(config.storage.audit)

    async def run() -> list[int]:
        try:
            return await store.migrate()
        finally:
            await store.aclose()

    applied = asyncio.run(run())
    print(f"applied migrations: {', '.join(map(str, applied))}" if applied else "schema is up to date")
    return 0


_USAGE_METRICS = {"requests": "sum", "errors": "sum", "total_tokens": "sum", "cost": "sum", "duration_ms": "avg"}


def _usage(args: argparse.Namespace) -> int:
    from vmx_core.audit.query import UsageQuery
    from vmx_core.audit.store import open_store

    plugins = Plugins.load()
    config = load_config(args.config, providers=plugins.providers(), rule_functions=plugins.rule_functions())
    dims = [d.strip() for d in args.by.split(",") if d.strip()]
    tenants = [(ws, env) for ws, wsc in sorted(config.workspaces.items()) for env in sorted(wsc.environments)
               if (args.workspace in (None, ws)) and (args.environment in (None, env))]
    queries = [UsageQuery.from_body(ws, env, {"granularity": "day", "metrics": _USAGE_METRICS, "dimensions": dims,
                                              "filter": {"start": args.since}}) for ws, env in tenants]
    store = open_store(config.storage.audit)

    async def run() -> list[tuple[str, str, list[dict[str, object]]]]:
        try:
            return [(q.workspace, q.environment, await store.usage(q)) for q in queries]
        finally:
            await store.aclose()

    header = ["workspace", "environment", *dims, "requests", "errors", "tokens", "cost_usd", "avg_ms"]
    table = [header]
    for ws, env, rows in asyncio.run(run()):
        totals: dict[tuple[object, ...], list[float]] = {}
        for r in rows:  # fold the daily buckets into one line per dimension combination
            t = totals.setdefault(tuple(r[d] for d in dims), [0, 0, 0, 0.0, 0.0])
            n = float(r["requests"] or 0)  # type: ignore[arg-type]
            t[0] += n
            t[1] += float(r["errors"] or 0)  # type: ignore[arg-type]
            t[2] += float(r["total_tokens"] or 0)  # type: ignore[arg-type]
            t[3] += float(r["cost"] or 0)  # type: ignore[arg-type]
            t[4] += float(r["duration_ms"] or 0) * n  # type: ignore[arg-type]
        for combo, (n, errors, tokens, cost, ms) in sorted(totals.items(), key=lambda kv: -kv[1][0]):
            table.append([ws, env, *("-" if v is None else str(v) for v in combo), f"{n:.0f}", f"{errors:.0f}",
                          f"{tokens:.0f}", f"{cost:.6f}", f"{ms / n:.1f}" if n else "-"])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _encrypt(args: argparse.Namespace) -> int:
    from vmx_core.security.credentials import Credentials
    from vmx_core.security.sodium import generate_key as generate_sodium_key

    if args.generate_key:
        print(generate_sodium_key())
        return 0
    missing = [f"--{n}" for n in ("config", "workspace", "environment", "connection") if not getattr(args, n)]
    if missing:
        raise ConfigError(f"vmx encrypt needs {', '.join(missing)} (or --generate-key)")
    for name in (args.workspace, args.environment, args.connection):
        if not _KEY_NAME.match(name):
            raise ConfigError(f"{name!r} is not a valid name (letters, digits, '.', '_', '-')")
    plugins = Plugins.load()
    config = load_config(args.config, providers=plugins.providers(), rule_functions=plugins.rule_functions())
    # One trailing newline is what `echo` and a terminal add; anything else is the secret's.
    secret = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if not secret:
        raise ConfigError("nothing to encrypt: write the secret on stdin")
    creds = Credentials(plugins.credential_ciphers())

    async def run() -> str:
        await creds.configure(config.encryption)
        try:
            return await creds.encrypt(secret, args.workspace, args.environment, args.connection)
        finally:
            await creds.aclose()

    print(asyncio.run(run()))
    return 0


def _rotate_key(args: argparse.Namespace) -> int:

    from vmx_core.security.credentials import Credentials
    from vmx_core.security.rotate import rewrite_text, rotate

    plugins = Plugins.load()
    config = load_config(args.config, providers=plugins.providers(), rule_functions=plugins.rule_functions())
    creds = Credentials(plugins.credential_ciphers())
    if config.storage.config == "database":
        from vmx_core.store.tools import rotate_store

        count = asyncio.run(rotate_store(config, plugins))
        print(f"re-encrypted {count} credential(s) in the config store (one transaction)")
        return 0

    async def run() -> list[Any]:
        try:
            return await rotate(config, creds)
        finally:
            await creds.aclose()

    rotated = asyncio.run(run())
    if not args.write:
        for r in rotated:
            print(f"{r.path}: {r.new}")
        return 0
    path = Path(args.config)
    text, missing = rewrite_text(path.read_text(encoding="utf-8"), rotated)
    tmp = path.with_name(path.name + ".rotating")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # atomic: a reader sees the old file or the new one, never half
    print(f"re-encrypted {len(rotated) - len(missing)} credential(s) in {path}")
    for r in missing:
        print(f"not in the file (set through a ${{VAR}}?): {r.path}: {r.new}")
    return 0


def _store_config(args: argparse.Namespace) -> tuple[Any, Plugins]:
    plugins = Plugins.load()
    config = load_config(args.config, providers=plugins.providers(), rule_functions=plugins.rule_functions())
    if config.storage.config != "database":
        raise ConfigError("needs storage.config: database", "$.storage.config")
    return config, plugins


def _import(args: argparse.Namespace) -> int:
    from vmx_core.store.tools import import_file

    config, plugins = _store_config(args)
    source = load_config(args.source or args.config, providers=plugins.providers(),
                         rule_functions=plugins.rule_functions())
    version = asyncio.run(import_file(config, source, plugins))
    print(f"imported {args.source or args.config}: config store version {version}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import yaml

    from vmx_core.store.tools import export_tree

    config, plugins = _store_config(args)
    print(yaml.safe_dump(asyncio.run(export_tree(config, plugins)), sort_keys=False), end="")
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    plugins = Plugins.load()
    config = load_config(args.config, providers=plugins.providers(), rule_functions=plugins.rule_functions())
    ws = config.workspaces.get(args.workspace)
    env = ws.environments.get(args.environment) if ws else None
    if env is None:
        raise ConfigError(f"no environment {args.workspace}/{args.environment} in {args.config}")
    resources = [r.strip() for r in args.resources.split(",") if r.strip()]
    unknown = [r for r in resources if r != "*" and r not in env.resources]
    if unknown:
        raise ConfigError(f"unknown resource(s): {', '.join(unknown)}")
    if not _KEY_NAME.match(args.name):
        raise ConfigError(f"{args.name!r} is not a valid key name (letters, digits, '.', '_', '-')")
    key = generate_key()
    print(f"key: {key}")
    print("This key is shown once. Store only its hash in the config:\n")
    # JSON strings are YAML strings: `*` and names such as `yes` or `null` stay strings.
    print(f"        api_keys:\n          {json.dumps(args.name)}:\n            key_sha256: \"{hash_key(key)}\"")
    print(f"            resources: [{', '.join(json.dumps(r) for r in resources)}]")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config as HypercornConfig

    from vmx_core import Gateway
    from vmx_server import h11_headers, otel
    from vmx_server import logging as vmx_logging
    from vmx_server.app import create_app

    vmx_logging.configure(args.log_level)
    h11_headers.install()  # vmx serve's own process: see the module
    gateway = Gateway.from_file(args.config)
    server = gateway.config.server
    hc = HypercornConfig()
    port = args.port if args.port is not None else server.port
    hc.bind = [f"{args.host or server.host}:{port}"]
    hc.accesslog = None  # the gateway writes its own canonical line per request
    # No "server: hypercorn-h11" banner: it tells a scanner what to try, and it is one more
    # header hypercorn validates and writes on every answer.
    hc.include_server_header = False
    hc.errorlog = "-"
    hc.keep_alive_timeout = 75
    hc.graceful_timeout = 30
    workers = args.workers or server.workers
    if workers > 1:
        return _serve_workers(args, hc, workers)
    app = create_app(gateway, args.config, settle_heap=True)
    # After the config loaded (a bad file exits before any exporter starts); workers set up
    # their own in vmx_server.asgi.
    otel_shutdown = otel.configure()

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # uvloop is optional on platforms without it
        pass

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(app, hc, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    try:
        asyncio.run(run())
    finally:
        if otel_shutdown is not None:
            otel_shutdown()  # the gateway is closed: every span has ended; flush them
    return 0


def _serve_workers(args: argparse.Namespace, hc: object, workers: int) -> int:
    from hypercorn.run import run as hypercorn_run

    # Each worker process builds its own gateway from the same file.
    os.environ["VMX_CONFIG"] = os.path.abspath(args.config)
    hc.application_path = "vmx_server.asgi:app"  # type: ignore[attr-defined]
    hc.workers = workers  # type: ignore[attr-defined]
    hc.worker_class = "uvloop"  # type: ignore[attr-defined]
    return int(hypercorn_run(hc) or 0)  # type: ignore[arg-type]
