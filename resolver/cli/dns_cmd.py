"""``dns``: the DNS bridge — the registry as DNS for an unmodified daprd (Kubernetes resolver + template)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal

import dns.name

from resolver.cli.common import settings_from
from resolver.dns.answers import DnsAnswers
from resolver.dns.server import DnsService, start_dns
from resolver.errors import ConfigError
from resolver.observability.metrics import serve_metrics
from resolver.registry.reader import RegistryReader
from resolver.resolution.resolver import Resolver

log = logging.getLogger(__name__)

# The start-up log line, and its parser: with --listen HOST:0 this line is how a supervisor
# (the demo, the tests, the benchmarks) learns the port that was bound.
LISTENING = "serving zone %s on %s:%d (UDP and TCP)"
LISTENING_PORT = re.compile(r"serving zone \S+ on [\d.]+:(\d+) \(UDP and TCP\)")


def add_dns_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                   common: argparse.ArgumentParser) -> None:
    bridge = commands.add_parser("dns", parents=[common], help="serve the registry as DNS (UDP and TCP)")
    bridge.add_argument("--listen", default="127.0.0.1:5353", help="HOST:PORT for UDP and TCP (default "
                        "127.0.0.1:5353; use 0.0.0.0:5353 in a pod)")
    bridge.add_argument("--zone", default="dapr.internal", help="the zone served (default dapr.internal)")
    bridge.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus /metrics (0 = off)")
    bridge.add_argument("--no-response-cache", action="store_true",
                        help="compute every answer afresh (for debugging and benchmarks)")


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError("--listen", f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an explicit ":PORT" means all interfaces


def cmd_dns(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    host, port = parse_listen(args.listen)
    try:
        zone = dns.name.from_text(args.zone).to_text()
    except dns.exception.DNSException as error:
        raise ConfigError("--zone", str(error)) from None
    serve_metrics(args.metrics_port)
    reader = RegistryReader(settings.etcd).start()
    try:
        answers = DnsAnswers(Resolver(settings, reader), zone, ttl=int(settings.dns_ttl))
        service = DnsService(answers, cache=not args.no_response_cache)
        return asyncio.run(_serve(service, reader, host, port, settings.initial_sync_wait, zone))
    finally:
        reader.stop()


async def _serve(service: DnsService, reader: RegistryReader, host: str, port: int, sync_wait: float,
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
