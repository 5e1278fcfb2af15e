"""``dns``: the DNS bridge — the registry as DNS for an unmodified daprd (Kubernetes resolver + template).

The limits (``--tcp-*``, ``--lookup-*``, ``--max-pending-lookups``, ``--cache-entries``) are
flags of this process on purpose: nothing a DNS client sends can change them. Their defaults
and the measurements behind them are in :mod:`resolver.dns.limits` and ``docs/dns.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import re
import signal
import socket
from collections.abc import Callable

import dns.exception
import dns.name

from resolver.cli.common import settings_from, start_reachability
from resolver.config import Settings
from resolver.dns.answers import DnsAnswers
from resolver.dns.limits import DnsLimits
from resolver.dns.lookups import HostLookups
from resolver.dns.server import DnsService, start_dns
from resolver.errors import ConfigError
from resolver.observability import metrics
from resolver.observability.metrics import serve_metrics
from resolver.registry.pool import open_reader
from resolver.registry.supervised import SupervisedReader
from resolver.resolution.resolver import Resolver

log = logging.getLogger(__name__)

# The start-up log line, and its parser: with --listen HOST:0 this line is how a supervisor
# (the demo, the tests, the benchmarks) learns the port that was bound.
LISTENING = "serving zone %s on %s:%d (UDP and TCP)"
LISTENING_PORT = re.compile(r"serving zone \S+ on [\d.:a-fA-F]+:(\d+) \(UDP and TCP\)")

# flag → (DnsLimits field, type, help)
_LIMIT_FLAGS: dict[str, tuple[str, type, str]] = {
    "--tcp-max-connections": ("tcp_connections", int, "open TCP connections at most; more are closed at accept"),
    "--tcp-idle-timeout": ("tcp_idle", float, "seconds a TCP client may wait before its next query"),
    "--tcp-read-timeout": ("tcp_read", float, "seconds to receive a whole message once it has started"),
    "--tcp-write-timeout": ("tcp_write", float, "seconds for a reply to be taken by a TCP client"),
    "--lookup-threads": ("lookups", int, "threads for fallback and host-name lookups (system resolver)"),
    "--lookup-queue": ("lookup_queue", int, "lookups that may wait for a thread; more get SERVFAIL"),
    "--lookup-timeout": ("lookup_timeout", float, "seconds a query waits for a lookup before SERVFAIL"),
    "--lookup-cache-seconds": ("lookup_cache_seconds", float, "seconds lookup results (failures too) are kept"),
    "--max-pending-lookups": ("pending", int, "queries waiting for lookups at once; more get SERVFAIL"),
    "--cache-entries": ("cache_entries", int, "cached responses at most (the table is cleared when full)"),
}


def add_dns_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                   common: argparse.ArgumentParser) -> None:
    bridge = commands.add_parser("dns", parents=[common], help="serve the registry as DNS (UDP and TCP)")
    bridge.add_argument("--listen", default="127.0.0.1:5353", help="HOST:PORT for UDP and TCP (default "
                        "127.0.0.1:5353; use 0.0.0.0:5353 in a pod)")
    bridge.add_argument("--zone", default="dapr.internal", help="the zone served (default dapr.internal)")
    bridge.add_argument("--ns-address", default="", help="comma-separated IPs of ns.ZONE, the zone's name "
                        "server (default: the --listen address, else this host's primary address)")
    bridge.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus /metrics (0 = off)")
    bridge.add_argument("--list-jitter", type=float, default=1.0,
                        help="wait a random 0..SECONDS before each full list of the registry, so bridges "
                             "started (or re-listing) together do not list at once (default 1; 0 = off)")
    bridge.add_argument("--no-response-cache", action="store_true",
                        help="compute every answer afresh (for debugging and benchmarks)")
    defaults = DnsLimits()
    for flag, (name, kind, text) in _LIMIT_FLAGS.items():
        bridge.add_argument(flag, type=kind, default=getattr(defaults, name),
                            help=f"{text} (default {getattr(defaults, name):g})")


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError("--listen", f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an explicit ":PORT" means all interfaces


def limits_from(args: argparse.Namespace) -> DnsLimits:
    values = {name: getattr(args, flag[2:].replace("-", "_")) for flag, (name, _, _) in _LIMIT_FLAGS.items()}
    try:
        return DnsLimits(**values)
    except ValueError as error:
        name = str(error).split(" ", 1)[0]
        flag = next((f for f, (n, _, _) in _LIMIT_FLAGS.items() if n == name), "--limits")
        raise ConfigError(flag, str(error).split(" ", 1)[1]) from None


def ns_addresses(spec: str, listen_host: str) -> tuple[str, ...]:
    """The addresses of ``ns.{zone}``: as given, else the listen address, else the primary one."""
    if spec:
        try:
            return tuple(str(ipaddress.ip_address(part.strip())) for part in spec.split(",") if part.strip())
        except ValueError as error:
            raise ConfigError("--ns-address", f"{error}; give IP addresses separated by commas") from None
    try:
        listen = ipaddress.ip_address(listen_host)
    except ValueError:
        listen = None
    if listen is not None and not listen.is_unspecified:
        return (str(listen),)
    try:  # the source address of the default route: a UDP connect sends nothing
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 53))
            return (str(probe.getsockname()[0]),)
    except OSError:
        return ("127.0.0.1",)


def check_template(settings: Settings, zone: dns.name.Name) -> None:
    """Refuse a fallback template inside the bridge's own zone: answering it would loop."""
    if settings.fallback == "none":
        return
    host = settings.template.format(id="app", namespace="default", clusterDomain=settings.cluster_domain,
                                    port=1).rpartition(":")[0].strip("[]")
    try:
        inside = dns.name.from_text(host).is_subdomain(zone)
    except dns.exception.DNSException:
        return
    if inside:
        raise ConfigError("template", f"{settings.template!r} names a host inside the zone {zone.to_text()} "
                          "this bridge serves, which would make it resolve itself; use a name outside the zone")


def cmd_dns(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    host, port = parse_listen(args.listen)
    try:
        zone_name = dns.name.from_text(args.zone)
    except dns.exception.DNSException as error:
        raise ConfigError("--zone", str(error)) from None
    zone = zone_name.to_text()
    check_template(settings, zone_name)
    limits = limits_from(args)
    if not 0 <= args.list_jitter <= 60:
        raise ConfigError("--list-jitter", f"{args.list_jitter:g} is not between 0 and 60 seconds; "
                          "give 0 to turn it off, or about 0.5 per bridge that shares the etcd")
    serve_metrics(args.metrics_port)
    # Always the full mirror, whatever cacheScope says: names are matched case-insensitively against
    # every app the registry holds (zone.AppSpellings), which an on-demand cache does not know.
    reader = open_reader(settings, scope="all", list_jitter=args.list_jitter)
    metrics.set_readiness(lambda: reader.synced)  # /readyz: ready once the first sync is done
    lookups = HostLookups(limits)
    resolver = Resolver(settings, reader, reachability=start_reachability(settings, reader, "dns"))
    try:
        answers = DnsAnswers(resolver, zone, ttl=int(settings.dns_ttl), lookups=lookups,
                             ns_addresses=ns_addresses(args.ns_address, host))
        service = DnsService(answers, cache=not args.no_response_cache, limits=limits)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(_serve(service, reader, host, port, settings.initial_sync_wait, zone))
    finally:
        resolver.close()
        lookups.close()
        reader.stop()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux; ~5x less CPU per datagram), else asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        log.info("uvloop is not installed: using asyncio's default event loop")
        return None
    return uvloop.new_event_loop


async def _serve(service: DnsService, reader: SupervisedReader, host: str, port: int, sync_wait: float,
                 zone: str) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if not await loop.run_in_executor(None, reader.wait_synced, sync_wait):
        log.warning("registry not synced after %.1fs: answering with fallbacks until it is", sync_wait)
    transport, server = await start_dns(service, host, port)
    bound = server.sockets[0].getsockname()
    log.info(LISTENING, zone, bound[0], bound[1])
    await stop.wait()
    log.info("shutting down the DNS bridge")
    transport.close()
    server.close()
    await server.wait_closed()
    return 0

