"""vmx's own upstream HTTP/1.1 client.

The providers' calls are the gateway's hot path, and a general-purpose client spends more CPU
per request (cookie jars, URL objects, per-request header multidicts, tracing hooks) than all of
vmx's governance together (docs/performance.md).  This one does what a gateway needs and no
more: pooled keep-alive connections per base URL with TCP_NODELAY, TLS from the system trust
store, whole or streamed bodies (content-length, chunked or until-close; gzip and deflate
decoded), back-pressure on streams, a deadline per request, and errors raised as the vmx tree.
"""

from vmx_core.http.client import MAX_BODY, Client, Response, default_tls, fetch

__all__ = ["MAX_BODY", "Client", "Response", "default_tls", "fetch"]
