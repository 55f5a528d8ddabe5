"""``vmx_server.asgi:app``: the app built from ``$VMX_CONFIG``, for ASGI servers that import
an application by path (hypercorn workers, uvicorn, gunicorn)."""

import atexit
import os

from vmx_core import Gateway
from vmx_server import h11_headers, otel
from vmx_server import logging as vmx_logging
from vmx_server.app import create_app

vmx_logging.configure(os.environ.get("VMX_LOG_LEVEL", "info"))
h11_headers.install()  # a process of its own: see the module
app = create_app(Gateway.from_file(os.environ["VMX_CONFIG"]), os.environ["VMX_CONFIG"], settle_heap=True)
_otel_shutdown = otel.configure()
if _otel_shutdown is not None:
    atexit.register(_otel_shutdown)
