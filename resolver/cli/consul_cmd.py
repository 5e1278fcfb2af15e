"""``consul``: the Consul-compatible catalog — the registry for daprd's stock consul resolver.

Same settings, cache and policies as ``dns`` (the point of view of ``clusterName``); the limits
and the tokens are flags of this process, never something a request can change (their
defaults and reasons: :mod:`resolver.consul.limits`, ``docs/consul.md``). With
``--write-token-file`` it also takes registrations (:mod:`resolver.consul.agent`) into
``clusterName``'s range, and withdraws them on SIGTERM as a Consul agent leaving does.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import threading
from pathlib import Path

from resolver.cli.common import settings_from, start_reachability
from resolver.cli.preflight import parse_host_port
from resolver.consul.agent import Agent
from resolver.consul.catalog import Catalog
from resolver.consul.index import ChangeFeed
from resolver.consul.limits import ConsulLimits
from resolver.consul.server import CatalogServer
from resolver.errors import ConfigError
from resolver.observability import metrics
from resolver.observability.metrics import serve_metrics
from resolver.records import names
from resolver.registry.pool import open_reader
from resolver.resolution.resolver import Resolver

log = logging.getLogger(__name__)

# The start-up log line, and its parser: with --listen HOST:0 it tells a supervisor the port.
LISTENING = "serving the Consul-compatible catalog on %s:%d (HTTP)"
LISTENING_PORT = re.compile(r"serving the Consul-compatible catalog on [\d.:a-fA-F]+:(\d+) \(HTTP\)")

# flag → (ConsulLimits field, type, help)
_LIMIT_FLAGS: dict[str, tuple[str, type, str]] = {
    "--max-blocking": ("max_blocking", int, "blocking queries waiting at once; more get 429"),
    "--max-connections": ("max_connections", int, "open HTTP connections; more get 503 and are closed"),
    "--idle-timeout": ("idle_timeout", float, "seconds an idle keep-alive connection is kept"),
    "--max-wait": ("max_wait", float, "seconds a blocking query waits at most (Consul's cap: 600)"),
    "--default-wait": ("default_wait", float, "seconds a blocking query without wait waits"),
    "--max-request-bytes": ("max_request_bytes", int, "bytes of request line (and body) at most"),
    "--max-entries": ("max_entries", int, "entries in one answer (weights are apportioned within 1/N)"),
    "--max-registrations": ("max_registrations", int, "services registered at once; more get 429"),
    "--registration-ttl": ("registration_ttl", float, "seconds a registered record outlives a dead role (its lease)"),
}


def add_consul_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                      common: argparse.ArgumentParser) -> None:
    catalog = commands.add_parser("consul", parents=[common],
                                  help="serve the registry as Consul's HTTP catalog (for daprd's consul resolver)")
    catalog.add_argument("--listen", default="127.0.0.1:8500", help="HOST:PORT (default 127.0.0.1:8500, Consul's "
                         "agent port; use 0.0.0.0:8500 in a pod)")
    catalog.add_argument("--namespace", default="default", help="the Dapr namespace answered when a request has no "
                         "ns parameter (Dapr's consul resolver sends none unless CONSUL_NAMESPACE is set)")
    catalog.add_argument("--meta-key", default="DAPR_PORT", help="the Service.Meta key of the Dapr port: the "
                         "resolver's daprPortMetaKey (default DAPR_PORT)")
    catalog.add_argument("--token-file", default="", help="a file holding the read token requests must carry "
                         "(X-Consul-Token or ?token=); default: no token")
    catalog.add_argument("--write-token-file", default="", help="a file holding the token that PUT "
                         "/v1/agent/service/register and deregister must carry (it is accepted for reads too); "
                         "default: no registrations (writes get 403)")
    catalog.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus /metrics (0 = off)")
    catalog.add_argument("--list-jitter", type=float, default=1.0,
                         help="wait a random 0..SECONDS before each full list of the registry (default 1; 0 = off)")
    defaults = ConsulLimits()
    for flag, (name, kind, text) in _LIMIT_FLAGS.items():
        catalog.add_argument(flag, type=kind, default=getattr(defaults, name),
                             help=f"{text} (default {getattr(defaults, name):g})")


def limits_from(args: argparse.Namespace) -> ConsulLimits:
    values = {name: getattr(args, flag[2:].replace("-", "_")) for flag, (name, _, _) in _LIMIT_FLAGS.items()}
    try:
        return ConsulLimits(**values)
    except ValueError as error:
        name = str(error).split(" ", 1)[0]
        flag = next((f for f, (n, _, _) in _LIMIT_FLAGS.items() if n == name), "--limits")
        raise ConfigError(flag, str(error).split(" ", 1)[1]) from None


def read_token(path: str, flag: str = "--token-file") -> str:
    """A token from ``--token-file`` or ``--write-token-file`` (a file, so the secret is not in the process list)."""
    if not path:
        return ""
    try:
        token = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(flag, f"cannot read {path}: {reason}") from None
    if not token or not token.isprintable() or len(token) > 512:
        raise ConfigError(flag, f"{path} must hold one printable token of 1 to 512 characters")
    return token


def cmd_consul(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    host, port = parse_host_port("--listen", args.listen, "0.0.0.0")  # noqa: S104 - ":PORT" means all
    limits = limits_from(args)
    token = read_token(args.token_file)
    write_token = read_token(args.write_token_file, "--write-token-file")
    if write_token and not settings.cluster_name:
        raise ConfigError("--write-token-file", "registrations are written under clusterName: set it "
                          "(--set clusterName=…), ideally a cluster of their own such as vms")
    try:
        namespace = names.check_label(args.namespace, "--namespace")
    except ValueError as error:
        raise ConfigError("--namespace", str(error).split(": ", 1)[-1]) from None
    if not args.meta_key or not args.meta_key.isprintable():
        raise ConfigError("--meta-key", f"{args.meta_key!r} is not a metadata key; give the resolver's "
                          "daprPortMetaKey (default DAPR_PORT)")
    if not 0 <= args.list_jitter <= 60:
        raise ConfigError("--list-jitter", f"{args.list_jitter:g} is not between 0 and 60 seconds")
    serve_metrics(args.metrics_port)
    reader = open_reader(settings, scope="all", list_jitter=args.list_jitter)
    metrics.set_readiness(lambda: reader.synced)
    resolver = Resolver(settings, reader, caller_namespace=namespace,
                        reachability=start_reachability(settings, reader, "consul"))
    feed = ChangeFeed(resolver).start()  # the index follows reachability changes too
    agent: Agent | None = None
    try:
        if not reader.wait_synced(settings.initial_sync_wait):
            log.warning("registry not synced after %.1fs: answering from what is known until it is",
                        settings.initial_sync_wait)
        catalog = Catalog(resolver, args.meta_key, limits.max_entries)
        if write_token:
            agent = Agent(reader.gateway, settings.cluster_name, namespace, args.meta_key, settings.address_policy,
                          limits)
        try:
            server = CatalogServer((host, port), catalog, feed, limits, namespace,
                                   settings.cluster_name or "dapr-etcd-resolver", token, agent, write_token)
        except OSError as error:
            raise ConfigError("--listen", f"cannot listen on {host}:{port}: {error.strerror}") from None
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        serving = threading.Thread(target=server.serve_forever, name="consul-http", daemon=True)
        serving.start()
        bound = server.socket.getsockname()
        log.info(LISTENING, bound[0], bound[1])
        stop.wait()
        log.info("shutting down the Consul-compatible catalog")
        feed.stop()  # waiting blocking queries answer with what they have
        server.shutdown()
        server.server_close()
        return 0
    finally:
        if agent is not None:
            agent.leave()  # as a Consul agent leaving: its services' records are withdrawn at once
        feed.stop()
        resolver.close()
        reader.stop()
