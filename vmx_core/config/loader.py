"""Load a config file: YAML -> env expansion -> strict structuring -> cross-reference checks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from vmx_core.config.convert import structure
from vmx_core.config.models import VmxConfig
from vmx_core.config.validate import validate
from vmx_core.errors import ConfigError
from vmx_core.providers import Provider

if TYPE_CHECKING:
    from vmx_core.routing.rules import RuleFunctions


def load_config(
    source: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    providers: Mapping[str, Provider] | None = None,
    rule_functions: RuleFunctions | None = None,
) -> VmxConfig:
    """Read and validate the config file at ``source``.

    With ``providers`` (name -> Provider) each connection's provider must exist and its
    ``options`` must match the provider's ``options_type``.  Every problem is reported at once,
    each with its key path, in one :class:`ConfigError`.
    """
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    return parse_config(text, environ=environ, providers=providers, rule_functions=rule_functions)


def parse_config(
    text: str,
    *,
    environ: Mapping[str, str] | None = None,
    providers: Mapping[str, Provider] | None = None,
    rule_functions: RuleFunctions | None = None,
) -> VmxConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    return config_from_dict(
        raw if raw is not None else {}, environ=environ, providers=providers, rule_functions=rule_functions
    )


def config_from_dict(
    raw: Any,
    *,
    environ: Mapping[str, str] | None = None,
    providers: Mapping[str, Provider] | None = None,
    rule_functions: RuleFunctions | None = None,
) -> VmxConfig:
    from vmx_core.config.env import expand

    if not isinstance(raw, dict):
        raise ConfigError("the config must be a mapping at the top level")
    expanded = expand(raw, os.environ if environ is None else environ)
    config = structure(expanded, VmxConfig)
    validate(config, providers, rule_functions)
    return config
