"""API keys, credential handling and (later) role policies."""
