"""The three client API shapes: their formats, SSE framing, usage and error bodies."""

from vmx_core.wire.formats import Format

__all__ = ["Format"]
