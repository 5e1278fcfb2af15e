"""Configuration: one set of camelCase keys, parsed and validated in one place (DESIGN §2)."""

from resolver.config.settings import (
    DEFAULT_SETTINGS,
    ENV_PREFIX,
    Layer,
    Settings,
    env_layer,
    file_layer,
    init_layers,
    load_settings,
    set_layer,
)
from resolver.config.values import AppPolicy, EtcdConnection, EtcdEndpoint, PolicyName, Template

__all__ = [
    "DEFAULT_SETTINGS",
    "ENV_PREFIX",
    "AppPolicy",
    "EtcdConnection",
    "EtcdEndpoint",
    "Layer",
    "PolicyName",
    "Settings",
    "Template",
    "env_layer",
    "file_layer",
    "init_layers",
    "load_settings",
    "set_layer",
]
