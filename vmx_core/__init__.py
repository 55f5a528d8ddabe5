"""vmx_core: the embeddable AI-gateway engine.  It never imports a web framework."""

from vmx_core import errors
from vmx_core.config import load_config
from vmx_core.errors import RequestError, VmxError
from vmx_core.gateway import Gateway
from vmx_core.plugins import hookimpl
from vmx_core.reply import Completion, StreamingCompletion
from vmx_core.request import ClientRequest
from vmx_core.wire.formats import Format

__all__ = [
    "ClientRequest",
    "Completion",
    "Format",
    "Gateway",
    "RequestError",
    "StreamingCompletion",
    "VmxError",
    "errors",
    "hookimpl",
    "load_config",
]
