"""``probe``: ask a running component (over its socket) and a DNS bridge for the same names.

What an operator runs inside a pod at 3 a.m. to see what daprd sees: the component's answer
through reflection discovery + Init + ResolveID (as daprd calls it), and the DNS bridge's
answer for ``{id}.{namespace}.{zone}``. Exits non-zero if any asked source failed.
"""

from __future__ import annotations

import argparse
import socket
import sys

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import grpc

from resolver.cli.inspect_cmds import print_table
from resolver.component.client import ComponentClient
from resolver.errors import ConfigError


def add_probe_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                     common: argparse.ArgumentParser) -> None:
    probe = commands.add_parser("probe", parents=[common], help="resolve names through a running component "
                                "socket and/or DNS bridge, as daprd would")
    probe.add_argument("names", nargs="*", metavar="ID[.NS]",
                       help="names to resolve; none: only check that the component is discoverable and SERVING "
                            "(a readiness probe that does not Init anything)")
    probe.add_argument("--socket", help="the component's socket, e.g. /tmp/dapr-components-sockets/etcd.sock")
    probe.add_argument("--instance", default="etcd", help="x-component-instance to send (default etcd)")
    probe.add_argument("--init", metavar="JSON", help="send Init with this configuration JSON first")
    probe.add_argument("--dns", metavar="HOST:PORT", help="the DNS bridge to ask, e.g. dns-bridge:5353")
    probe.add_argument("--zone", default="dapr.internal")
    probe.add_argument("--port", type=int, default=50002, help="the caller's internal gRPC port (for fallbacks)")


def _dns_server(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise ConfigError("--dns", f"{text!r} is not HOST:PORT")
    try:
        return str(socket.getaddrinfo(host or "127.0.0.1", None, type=socket.SOCK_DGRAM)[0][4][0]), int(port)
    except OSError as error:
        raise ConfigError("--dns", f"cannot resolve {host!r}: {error}") from None


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


def cmd_probe(args: argparse.Namespace) -> int:
    if not args.socket and not args.dns:
        raise ConfigError("--socket", "give --socket, --dns or both")
    failed = False
    rows = []
    client = ComponentClient(args.socket, instance=args.instance, timeout=5) if args.socket else None
    try:
        if client is not None:
            services = client.list_services()
            health = client.health()
            print(f"component at {args.socket} is {health}, serving: {', '.join(services)}")
            if health != "SERVING":
                failed = True
            if args.init:
                client.init(args.init)
        server = _dns_server(args.dns) if args.dns else None
        for name in args.names:
            row = [name]
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
            rows.append(row)
    except grpc.RpcError as error:
        print(f"error: component at {args.socket}: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
    if rows:
        print_table(["NAME", *(["COMPONENT"] if client else []), *(["DNS BRIDGE"] if args.dns else [])], rows)
    return 1 if failed else 0
