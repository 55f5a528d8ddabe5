"""What each target is given: the vmx config (governance on), LiteLLM's config, the bodies."""

from __future__ import annotations

from typing import Any

import orjson

#: A plaintext key is fine for a throw-away benchmark config; production stores only the hash.
VMX_KEY = "vmx_bench_" + "k" * 33
BIG = 10**12  # limits that are checked on every request but never reached

PROMPT = (
    "You are a helpful assistant. Summarise the following paragraph in two sentences: "
    "The gateway sits between many applications and many model providers. It authenticates "
    "each caller, applies routing rules, enforces capacity limits and records an audit row "
    "for every request, all while adding as little latency as possible."
)


def body(model: str, stream: bool, vmx: bool = False) -> bytes:
    payload: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}],
        "max_tokens": 256,
        "stream": stream,
    }
    if vmx:
        payload["vmx"] = {"correlationId": "bench-correlation-0001", "metadata": {"team": "perf", "app": "bench"}}
    return orjson.dumps(payload)


def vmx_config(upstream: str, audit: str, capacity: str) -> dict[str, Any]:
    """`vmx` with governance on: key auth, 3 routing rules, connection/resource/key limits,
    an audit sink, and (from the request) metadata and a correlation id."""
    main = {"connection": "up", "model": "gpt-4o-mini"}
    return {
        "server": {"host": "127.0.0.1", "port": 8080},
        "storage": {"audit": audit, "capacity": capacity},
        "workspaces": {"acme": {"environments": {"prod": {
            "connections": {"up": {
                "provider": "openai",
                "credentials": {"api_key": "sk-bench"},
                "options": {"base_url": upstream},
                "capacity": [{"period": "minute", "requests": BIG, "tokens": BIG}],
            }},
            "resources": {"chat": {
                "model": main,
                "routing": [
                    {"name": "long-prompts", "when": "tokens.input > 8000",
                     "then": {"connection": "up", "model": "gpt-4.1"}},
                    {"name": "research", "when": {"all": [{"field": "metadata.team", "op": "eq", "value": "research"}]},
                     "then": {"connection": "up", "model": "gpt-4.1-mini"}},
                    {"name": "canary", "traffic": 10, "then": {"connection": "up", "model": "gpt-4o-mini-canary"}},
                ],
                "capacity": [{"period": "minute", "requests": BIG}],
            }},
            "api_keys": {"bench": {
                "key": VMX_KEY, "resources": ["chat"], "capacity": [{"period": "day", "tokens": BIG}],
            }},
        }}}},
    }


#: LiteLLM refuses to start without a master key (a strong-looking one); callers send it.
LITELLM_KEY = "sk-" + "0123456789abcdef" * 4


def litellm_config(upstream: str) -> dict[str, Any]:
    return {
        "general_settings": {"master_key": LITELLM_KEY},
        "model_list": [{"model_name": "gpt-4o-mini", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": upstream, "api_key": "sk-bench"}}],
        "litellm_settings": {"telemetry": False},
    }
