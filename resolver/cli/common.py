"""Options every subcommand shares (etcd settings, logging) and how they become settings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from resolver.config import Layer, Settings, env_layer, file_layer, load_settings, set_layer
from resolver.errors import ConfigError, RegistryError, ResolverError


def settings_options() -> argparse.ArgumentParser:
    """A parent parser with --config, --set and the logging flags."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("configuration (keys of DESIGN §2; later sources win)")
    group.add_argument("--config", metavar="FILE", help="YAML file of configuration keys "
                       "(or a Dapr Configuration document)")
    group.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                       help="set one key, e.g. --set etcdEndpoints=10.0.0.5:2379 (repeatable)")
    logs = parent.add_argument_group("logging")
    logs.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    logs.add_argument("--log-format", default="text", choices=["text", "json"])
    return parent


def startup_layers(args: argparse.Namespace) -> tuple[list[Layer], bool]:
    """Defaults < --config < DAPR_NR_* < --set; and whether any start-up configuration was given."""
    layers = [file_layer(args.config)] if args.config else []
    environment = env_layer()
    layers += [environment, set_layer(args.set)]
    return layers, bool(args.config or args.set or environment.values)


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(startup_layers(args)[0])


def run_reporting_errors(command: Callable[[], int]) -> int:
    """Run a subcommand; our errors become one clear line on stderr and a non-zero exit."""
    try:
        return command()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RegistryError as error:
        print(f"error: registry: {error}", file=sys.stderr)
        return 1
    except ResolverError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
