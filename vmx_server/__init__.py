"""vmx_server: the thin Starlette shell around :class:`vmx_core.Gateway`."""

from vmx_server.app import create_app

__all__ = ["create_app"]
