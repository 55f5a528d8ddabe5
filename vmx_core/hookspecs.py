"""Every hook a vmx plugin can implement.

Hooks are **synchronous**: pluggy cannot await, and an ``async def`` ``firstresult`` hook would
always "win" because a coroutine is not ``None``.  A hook that needs I/O returns an object
whose methods are async.  vmx's own features (the built-in providers, stores and sinks) are
registered through these same hooks, so anything a built-in does, a plugin can do.

A plugin is a module or object with functions decorated by :data:`vmx_core.hookimpl`,
published under the entry-point group ``vmx``::

    [project.entry-points.vmx]
    echo = "vmx_provider_echo"

Each hook below has a section in ``docs/plugin_hooks.md``; a test fails when one is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from vmx_core.audit.record import AuditSink
    from vmx_core.config.models import VmxConfig
    from vmx_core.gateway import Gateway
    from vmx_core.providers import Provider

hookspec = pluggy.HookspecMarker("vmx")


@hookspec
def vmx_register_providers() -> Sequence[Provider]:
    """Return the :class:`~vmx_core.providers.Provider` objects this plugin adds.

    A provider is named by ``Provider.name``; a connection selects it with
    ``provider: NAME``.  Two plugins registering the same name is a startup error.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def vmx_capacity_store(uri: str) -> Any:
    """Return a capacity store for ``storage.capacity`` = ``uri``, or ``None`` if the URI's
    scheme is not yours.  The first non-``None`` answer wins; built-in stores are ``trylast``
    so a plugin can replace them.  The store's methods are async."""
    raise NotImplementedError


@hookspec
def vmx_register_audit_sinks(config: VmxConfig) -> Sequence[AuditSink]:
    """Return audit sinks for ``config``.  Each receives every finished request's
    :class:`~vmx_core.audit.record.AuditRecord` through ``enqueue`` (which must not block).

    The built-in sink (``storage.audit``: SQLite or Postgres) is registered through this hook
    too.  An implementation may omit the ``config`` argument."""
    raise NotImplementedError


@hookspec
def vmx_register_credential_ciphers() -> Sequence[Any]:
    """Return credential cipher kinds (:class:`~vmx_core.security.ciphers.CipherKind`).

    A kind has a ``name`` (the ``<cipher>`` part of ``vmx:enc:v1:<cipher>:<base64>``) and
    ``open(settings)``, which takes the config's ``encryption`` section and returns a
    :class:`~vmx_core.security.ciphers.Cipher` with async ``encrypt(plaintext,
    associated_data)``, ``decrypt(ciphertext, associated_data)`` and ``aclose()``.  The
    built-in ``libsodium`` and ``aws-kms`` are registered ``trylast``, so a plugin's kind of
    the same name replaces them."""
    raise NotImplementedError


@hookspec
def vmx_register_rule_functions() -> dict[str, Callable[..., Any]]:
    """Return extra functions callable from routing-rule CEL expressions, by name."""
    raise NotImplementedError


@hookspec
def vmx_completion_wrapper(gateway: Gateway) -> Any:
    """Return a wrapper around the completion pipeline, or ``None``.

    The wrapper is an async callable ``wrapper(request, call_next) -> Reply``; wrappers nest in
    pluggy's call order, outermost first (the plugin registered last, or ``tryfirst``, is the
    outermost).  Use it for policies that see every request (guardrails, extra headers,
    request rewriting)."""
    raise NotImplementedError


@hookspec
def vmx_startup(gateway: Gateway) -> Any:
    """Called when the gateway starts.  May return an awaitable, which is awaited."""
    raise NotImplementedError


@hookspec
def vmx_shutdown(gateway: Gateway) -> Any:
    """Called when the gateway stops, after in-flight requests finished.  May return an
    awaitable, which is awaited."""
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Server-side hooks: called by vmx_server only.  They live here so that every hookspec is in
# one documented place; vmx_core itself never calls them.


@hookspec
def vmx_register_routes() -> Sequence[Any]:
    """Return extra Starlette routes to mount on the server (``vmx_server`` only)."""
    raise NotImplementedError


@hookspec
def vmx_asgi_wrapper(app: Any) -> Any:
    """Return an ASGI app wrapping ``app`` (middleware), or ``None`` (``vmx_server`` only).
    Wrappers apply in registration order."""
    raise NotImplementedError
