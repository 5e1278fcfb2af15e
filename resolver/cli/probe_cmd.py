"""``probe``: ask a running component (over its socket) and a DNS bridge for the same names.

What an operator runs inside a pod at 3 a.m. to see what daprd sees: the component's answer
through reflection discovery + Init + ResolveID (as daprd calls it), the DNS bridge's answer
for ``{id}.{namespace}.{zone}``, and the registry's health as the component sees it (health
services ``registry``: synced and connected now; ``registry-synced``: synced at least once).

Exit codes (docs/operations.md): 0 serving fresh; 3 serving the last known state (etcd
unreachable since the first sync); 4 never synced; 1 a source could not be asked or an answer
failed; 2 bad flags. ``--readiness`` folds 3 into 0: readiness fails only until the first sync,
because a pod that turned unready on an etcd outage would blank its answers.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from resolver.cli.inspect_cmds import print_table
from resolver.component.client import ComponentClient
from resolver.errors import FlagError, RegistryError

FRESH, LAST_KNOWN, NEVER_SYNCED, FAILED = 0, 3, 4, 1
REGISTRY_SYNCED_HEALTH = "registry-synced"  # resolver.component.server serves both (not imported: probe stays light)
REASON_METADATA = "x-registry-problem"


def add_probe_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                     common: argparse.ArgumentParser) -> None:
    probe = commands.add_parser("probe", parents=[common], help="resolve names through a running component "
                                "socket and/or DNS bridge, as daprd would",
                                epilog="exit codes: 0 serving fresh; 3 serving the last known state (etcd "
                                "unreachable since the first sync); 4 never synced; 1 a source could not be asked "
                                "or a name failed; 2 bad flags. See docs/operations.md.")
    probe.add_argument("names", nargs="*", metavar="ID[.NS]",
                       help="names to resolve; none: only check that the component is discoverable and SERVING "
                            "(a readiness probe that does not Init anything)")
    probe.add_argument("--socket", help="the component's socket, e.g. /tmp/dapr-components-sockets/etcd.sock")
    probe.add_argument("--instance", default="etcd", help="x-component-instance to send (default etcd)")
    probe.add_argument("--init", metavar="JSON", help="send Init with this configuration JSON first")
    probe.add_argument("--dns", metavar="HOST:PORT", help="the DNS bridge to ask, e.g. dns-bridge:5353")
    probe.add_argument("--zone", default="dapr.internal")
    probe.add_argument("--port", type=int, default=50002, help="the caller's internal gRPC port (for fallbacks)")
    probe.add_argument("--readiness", action="store_true", help="exit 0 also while serving the last known state "
                       "(for readiness probes: unready only until the first sync)")


def _dns_server(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise FlagError("--dns", f"{text!r} is not HOST:PORT")
    try:
        return str(socket.getaddrinfo(host or "127.0.0.1", None, type=socket.SOCK_DGRAM)[0][4][0]), int(port)
    except OSError as error:
        raise FlagError("--dns", f"cannot resolve {host!r}: {error}") from None


def _ask_dns(server: tuple[str, int], name: str, zone: str) -> str:
    app_id, _, namespace = name.partition(".")
    query = dns.message.make_query(f"{app_id}.{namespace or 'default'}.{zone}", "A")
    try:
        reply = dns.query.udp(query, server[0], port=server[1], timeout=3)
        if reply.flags & dns.flags.TC:
            reply = dns.query.tcp(query, server[0], port=server[1], timeout=3)
    except (dns.exception.DNSException, OSError) as error:
        return f"error: {error}"
    if reply.rcode() != dns.rcode.NOERROR:
        return dns.rcode.to_text(reply.rcode())
    return " ".join(item.to_text() for rrset in reply.answer for item in rrset) or "(no data)"


def _health(client: ComponentClient, service: str) -> str:
    """A health service's status; ``UNKNOWN_SERVICE`` when the component does not offer it."""
    try:
        return client.health(service)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return "UNKNOWN_SERVICE"
        raise


def _etcd_from_here(args: argparse.Namespace) -> str:
    """With etcd settings given to probe, ask etcd directly: the reason the component cannot say."""
    if not (args.config or args.set):
        return ""
    from resolver.cli.common import settings_from
    from resolver.etcd.gateway import EtcdGateway

    settings = settings_from(args)
    gateway = EtcdGateway(settings.etcd)
    try:
        gateway.status(f"{settings.prefix}/")
    except RegistryError as error:
        return f"; from here: {error}"
    finally:
        gateway.close()
    return f"; from here etcd at {','.join(map(str, settings.etcd.endpoints))} answers"


def _registry_reason(client: ComponentClient) -> str:
    """The component's own words for an unhealthy registry: trailing metadata ``x-registry-problem`` of
    the ``registry`` health check (e.g. "etcd unreachable since 12:03:41"), "" if it does not say."""
    stub = health_pb2_grpc.HealthStub(client.channel)
    try:
        _, call = stub.Check.with_call(health_pb2.HealthCheckRequest(service="registry"), timeout=client.timeout)
    except grpc.RpcError:
        return ""
    return next((str(value) for key, value in call.trailing_metadata() or () if key == REASON_METADATA), "")


def registry_state(client: ComponentClient, args: argparse.Namespace) -> tuple[int, str]:
    """The exit code and the line describing the registry as the component sees it."""
    if _health(client, "registry") == "SERVING":
        return FRESH, "registry: SERVING (synced and connected: answers are fresh)"
    synced = _health(client, REGISTRY_SYNCED_HEALTH)
    reason = _registry_reason(client)
    hint = (f" ({reason})" if reason else "") + _etcd_from_here(args)
    if synced == "SERVING":
        return LAST_KNOWN, ("registry: NOT_SERVING: etcd unreachable (or reader failed) since the first sync: "
                            f"serving the last known state{hint}")
    if synced == "UNKNOWN_SERVICE" and not reason.startswith("never synced"):
        return NEVER_SYNCED, ("registry: NOT_SERVING: never synced or etcd unreachable (this component does not "
                              f"say which){hint}")
    return NEVER_SYNCED, f"registry: NOT_SERVING: never synced: answers are fallbacks{hint}"


def _ask(name: str, client: ComponentClient | None, server: tuple[str, int] | None,
         args: argparse.Namespace) -> tuple[list[str], bool]:
    """One table row: the component's and the DNS bridge's answer for ``name``; and whether one failed."""
    row, failed = [name], False
    if client is not None:
        try:
            row.append(client.resolve(name, port=args.port))
        except grpc.RpcError as error:
            failed = True
            row.append(f"{error.code().name}: {error.details()}")
    if server is not None:
        answer = _ask_dns(server, name, args.zone)
        failed |= answer.startswith("error") or answer in ("SERVFAIL", "REFUSED")
        row.append(answer)
    return row, failed


def cmd_probe(args: argparse.Namespace) -> int:
    if not args.socket and not args.dns:
        raise FlagError("--socket", "give --socket, --dns or both")
    if args.socket and not Path(args.socket).exists():
        raise FlagError("--socket", f"{args.socket} does not exist; give the socket `serve` logs at start-up "
                        "(serving … on PATH), normally $DAPR_COMPONENTS_SOCKETS_FOLDER/NAME.sock")
    failed = False
    state = FRESH
    rows = []
    client = ComponentClient(args.socket, instance=args.instance, timeout=5) if args.socket else None
    try:
        if client is not None:
            services = client.list_services()
            health = client.health()
            print(f"component at {args.socket} is {health}, serving: {', '.join(services)}")
            if health != "SERVING":
                failed = True
            state, line = registry_state(client, args)
            print(line)
            if args.init:
                client.init(args.init)
        server = _dns_server(args.dns) if args.dns else None
        for name in args.names:
            row, row_failed = _ask(name, client, server, args)
            rows.append(row)
            failed |= row_failed
    except grpc.RpcError as error:
        fix = ("is `serve` running, and is this its socket?" if error.code() == grpc.StatusCode.UNAVAILABLE
               else "see the component's log")
        print(f"error: component at {args.socket}: {error.code().name}: {error.details()}; {fix}", file=sys.stderr)
        return FAILED
    finally:
        if client is not None:
            client.close()
    if rows:
        print_table(["NAME", *(["COMPONENT"] if client else []), *(["DNS BRIDGE"] if args.dns else [])], rows)
    if failed:
        return FAILED
    return FRESH if args.readiness and state == LAST_KNOWN else state
