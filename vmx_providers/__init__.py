"""vmx's built-in providers.  Each module is a plugin registered under the ``vmx`` entry-point
group in pyproject.toml, exactly as a third-party provider package would be."""
