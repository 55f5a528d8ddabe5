"""Configuration: attrs models, the strict loader and its checks (DESIGN §7)."""

from vmx_core.config.loader import config_from_dict, load_config, parse_config
from vmx_core.config.models import (
    ApiKeyConfig,
    ConnectionConfig,
    EnvironmentConfig,
    ModelRef,
    ResourceConfig,
    VmxConfig,
    WorkspaceConfig,
)

__all__ = [
    "ApiKeyConfig",
    "ConnectionConfig",
    "EnvironmentConfig",
    "ModelRef",
    "ResourceConfig",
    "VmxConfig",
    "WorkspaceConfig",
    "config_from_dict",
    "load_config",
    "parse_config",
]
