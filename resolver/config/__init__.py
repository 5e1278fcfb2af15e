"""Configuration: one set of camelCase keys, parsed and validated in one place (docs/configuration.md)."""

from resolver.config.settings import (
    DEFAULT_SETTINGS,
    ENV_PREFIX,
    Layer,
    ServeLimits,
    Settings,
    env_layer,
    file_layer,
    init_layers,
    load_settings,
    set_layer,
)
from resolver.config.traffic import AppPolicy, PolicyName
from resolver.config.values import ClusterCIDRs, Template

__all__ = [
    "DEFAULT_SETTINGS",
    "ENV_PREFIX",
    "AppPolicy",
    "ClusterCIDRs",
    "Layer",
    "PolicyName",
    "ServeLimits",
    "Settings",
    "Template",
    "env_layer",
    "file_layer",
    "init_layers",
    "load_settings",
    "set_layer",
]
