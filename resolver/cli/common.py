"""Options every subcommand shares (etcd settings, logging), how they become settings, and the one
place where any error of any subcommand becomes one line on stderr and an exit code.

Exit codes: 0 success; 1 a runtime failure (etcd, the component, a file); 2 bad configuration
or flags (as argparse); 130 interrupted. Never a traceback: an error we did not foresee is
still one line naming its type, with the hint to rerun with ``--log-level debug`` (which logs
the stack).
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable

from resolver.config import Layer, Settings, env_layer, file_layer, load_settings, set_layer
from resolver.errors import ConfigError, FlagError, RegistryError, ResolverError
from resolver.etcd import etcd_errors
from resolver.etcd.connection import EtcdConnection
from resolver.observability import metrics
from resolver.reachability import Reachability
from resolver.reachability import enabled as reachability_enabled
from resolver.registry.supervised import SupervisedReader

log = logging.getLogger(__name__)
_connections: list[EtcdConnection] = []
"""The etcd connection of the settings this command loaded, so an etcd error can be reported
precisely (endpoint, user, TLS files) even when it was translated without them."""
_key_ranges: list[str] = []


def note_key_range(key: str) -> None:
    """Say which key (range) the command is about to read or write, for a precise PERMISSION_DENIED."""
    _key_ranges[:] = [key]


def settings_options() -> argparse.ArgumentParser:
    """A parent parser with --config, --set and the logging flags."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("configuration (keys: docs/configuration.md; later sources win)")
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
    settings = load_settings(startup_layers(args)[0])
    _connections[:] = [settings.etcd]
    return settings


_OS_FIXES = {
    errno.EACCES: "check the owner and mode of that path, or run as a user that may use it",
    errno.EPERM: "check the owner and mode of that path, or run as a user that may use it",
    errno.ENOENT: "create it or correct the path",
    errno.ENOTDIR: "a part of that path is a file: give a directory",
    errno.EISDIR: "that is a directory: give a file",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.EADDRINUSE: "another process listens there: choose another port or stop that process",
    errno.EADDRNOTAVAIL: "that is not an address of this machine: use 0.0.0.0 or one of its addresses",
    errno.EROFS: "the file system is read-only: give a writable path",
    errno.ENOSPC: "the disk is full: free space",
}


def describe_error(error: BaseException) -> tuple[str, int]:
    """The one line (without ``error:``) and the exit code for any exception a subcommand raised."""
    if isinstance(error, ConfigError):
        if error.field.startswith("--") and not isinstance(error, FlagError):
            return f"invalid {error.field}: {error.message}", 2  # a flag is named as a flag, not as a key
        return str(error), 2
    if isinstance(error, RegistryError):
        return f"registry: {_precise(error)}", 1
    if isinstance(error, ResolverError):
        return str(error), 1
    if isinstance(error, OSError):
        target = " -> ".join(str(name) for name in (error.filename, error.filename2) if name)
        fix = _OS_FIXES.get(error.errno or 0, "")
        return f"{target + ': ' if target else ''}{error.strerror or error}{'; ' + fix if fix else ''}", 1
    import yaml

    if isinstance(error, yaml.YAMLError):
        mark = getattr(error, "problem_mark", None)
        where = f"{mark.name} line {mark.line + 1}: " if mark is not None else ""
        return f"{where}not valid YAML ({getattr(error, 'problem', None) or error}); fix the file", 1
    import grpc

    if isinstance(error, grpc.RpcError) and callable(getattr(error, "code", None)):
        return f"gRPC call failed: {error.code().name}: {error.details()}", 1
    return (f"unexpected {type(error).__name__}: {error}; rerun with --log-level debug for the stack and report "
            "it as a bug"), 1


def _precise(error: RegistryError) -> str:
    """The error's message, re-diagnosed with this command's connection if it was translated without one."""
    message = str(error)
    original = error.__context__  # translate() raises "from None": the cause is hidden, not lost
    if not _connections or original is None or isinstance(original, RegistryError) \
            or not message.startswith("etcd ") or " on '" in message:  # already names its key: keep it
        return message
    what = message.removeprefix("etcd ").split(" at ", 1)[0]
    return etcd_errors.diagnose(original, _connections[0], _key_ranges[0] if _key_ranges else "").message(what)


def run_reporting_errors(command: Callable[[], int]) -> int:
    """Run a subcommand; every error becomes one clear line on stderr and a non-zero exit."""
    try:
        return command()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        log.debug("%s failed", type(error).__name__, exc_info=True)
        message, code = describe_error(error)
        print(f"error: {message}", file=sys.stderr)
        return code


def start_reachability(settings: Settings, reader: SupervisedReader, role: str) -> Reachability | None:
    """The role's reachability probing (``reachability`` setting), its ``/reachability`` page
    served next to /metrics; None when off for this role."""
    if not reachability_enabled(settings, role):
        log.info("reachability probing off (reachability=%s in the %s role)", settings.reachability, role)
        return None
    reachability = Reachability(settings, reader.cache).start()
    metrics.set_page("/reachability", reachability.report)
    return reachability
