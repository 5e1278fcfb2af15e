"""dapr-etcd-resolver: one command, one subcommand per role.

serve      the Dapr pluggable NameResolution component (gRPC on a Unix socket)
publish    the per-cluster agent that writes Dapr pods into etcd
dns        the DNS bridge for an unmodified daprd
consul     the Consul-compatible catalog for daprd's stock consul resolver
ls / status / resolve    inspect the registry and try a resolution
probe      ask a running component socket and DNS bridge, as daprd would
etcd-rbac  the etcd bootstrap: root user, per-cluster roles, users, registry init, auth enable
registry init    create the registry's identity key (administrator bootstrap)
demo       the whole story on one machine

Documentation: README.md; docs/operations.md (errors, exit codes, probes, metrics, recovery),
docs/configuration.md (every key), docs/registry-schema.md (the keys in etcd),
docs/architecture.md.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Sequence

from resolver import __version__
from resolver.cli import preflight
from resolver.cli.common import run_reporting_errors, settings_options
from resolver.observability.logs import setup_logging

# Subcommands are imported only when chosen, so `ls` does not pay for kubernetes' import time.
COMMANDS = {
    "serve": "resolver.cli.serve_cmd:cmd_serve",
    "resolve": "resolver.cli.inspect_cmds:cmd_resolve",
    "ls": "resolver.cli.inspect_cmds:cmd_ls",
    "status": "resolver.cli.status_cmd:cmd_status",
    "demo": "resolver.demo.run:cmd_demo",
    "publish": "resolver.cli.publish_cmd:cmd_publish",
    "dns": "resolver.cli.dns_cmd:cmd_dns",
    "consul": "resolver.cli.consul_cmd:cmd_consul",
    "probe": "resolver.cli.probe_cmd:cmd_probe",
    "etcd-rbac": "resolver.cli.rbac_cmd:cmd_rbac",
    "registry": "resolver.cli.registry_cmd:cmd_registry",
}


# Subcommands whose parsers live in their own (heavier) modules: built only when chosen or for --help.
_PARSERS = {
    "publish": ("resolver.cli.publish_cmd", "add_publish_parser"),
    "dns": ("resolver.cli.dns_cmd", "add_dns_parser"),
    "consul": ("resolver.cli.consul_cmd", "add_consul_parser"),
    "probe": ("resolver.cli.probe_cmd", "add_probe_parser"),
    "etcd-rbac": ("resolver.cli.rbac_cmd", "add_rbac_parser"),
    "registry": ("resolver.cli.registry_cmd", "add_registry_parser"),
}


def _grace_seconds(text: str) -> float:
    """``--grace``: a finite number of seconds, 0 to 300 (argparse's float takes nan, inf and negatives)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 <= value <= 300:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not between 0 and 300 seconds")
    return value


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, the other subcommands' parsers are stubs.

    Building ``dns``'s parser imports the DNS stack and ``publish``'s the Kubernetes client: a
    ``serve`` in every application pod should pay for neither (start-up time and memory).
    """
    from resolver.component.server import default_socket_dir

    common = settings_options()
    parser = argparse.ArgumentParser(prog="dapr-etcd-resolver", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="run the pluggable name-resolution component")
    serve.add_argument("--socket-dir", default=default_socket_dir(),
                       help="directory of the socket (default: $DAPR_COMPONENTS_SOCKETS_FOLDER, "
                            "else /tmp/dapr-components-sockets)")
    serve.add_argument("--name", default="etcd", help="component name: the socket is NAME.sock (default etcd)")
    serve.add_argument("--grace", type=_grace_seconds, default=5.0,
                       help="seconds in-flight calls get on shutdown (0-300, default 5)")
    serve.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus /metrics (0 = off)")

    resolve = commands.add_parser("resolve", parents=[common], help="resolve one app id, as daprd would")
    resolve.add_argument("id", help="app id, or appid.namespace")
    resolve.add_argument("--namespace", default="", help="target namespace (default: from the id, else the "
                         "caller's)")
    resolve.add_argument("--caller-namespace", default="default", help="the caller's namespace (default default)")
    resolve.add_argument("--port", type=int, default=50002, help="the caller's internal gRPC port (for the "
                         "fallback)")
    resolve.add_argument("--all", action="store_true", help="print the ResolveIDMulti list")
    resolve.add_argument("--output", choices=["text", "json"], default="text",
                         help="text: only the answer on stdout; json: answer, outcome, policy and registry state")

    ls = commands.add_parser("ls", parents=[common], help="list endpoints in the registry")
    ls.add_argument("--namespace", help="only this namespace")
    ls.add_argument("--app", help="only this app id")
    ls.add_argument("--output", choices=["table", "json"], default="table")

    status = commands.add_parser("status", parents=[common], help="each cluster: publisher, identity, lease, "
                                 "renewal, sync, endpoints; clusters gone or in conflict")
    status.add_argument("--output", choices=["table", "json"], default="table")
    status.add_argument("--reachability", metavar="HOST:PORT", action="append", default=[],
                        help="also show what this DNS bridge or consul role (its --metrics-port) finds reachable; "
                        "repeatable")

    for name, (module_name, function_name) in _PARSERS.items():
        if only is None or only == name:
            getattr(importlib.import_module(module_name), function_name)(commands, common)
        else:
            commands.add_parser(name, parents=[common])

    demo = commands.add_parser("demo", parents=[common], help="run the end-to-end demo on this machine")
    demo.add_argument("--keep-going", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, check local resources, run; every failure — even a broken install — is one line."""

    def run() -> int:
        arguments = list(sys.argv[1:] if argv is None else argv)
        chosen = arguments[0] if arguments and arguments[0] in COMMANDS else None
        args = build_parser(chosen).parse_args(arguments)
        setup_logging(args.log_level, args.log_format)
        preflight.check(args)  # local resources first: never make an operator wait for etcd to hear of a typo
        module_name, _, function_name = COMMANDS[args.command].partition(":")
        return int(getattr(importlib.import_module(module_name), function_name)(args))

    return run_reporting_errors(run)


if __name__ == "__main__":
    sys.exit(main())
