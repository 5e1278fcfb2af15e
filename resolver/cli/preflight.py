"""Checks of local resources a subcommand needs, done *before* it waits for etcd.

An operator who typed a wrong ``--socket-dir`` or a taken ``--listen`` port should learn it at
once, in one line naming the flag and the fix — not after the registry wait (seconds) and not
as a traceback from deep inside gRPC or asyncio. Each check only looks (or binds and closes
at once); the subcommand still handles the real resource itself, and a failure there (e.g. a
port taken in between) is mapped to one line by :func:`resolver.cli.common.run_reporting_errors`.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
from collections.abc import Callable
from pathlib import Path

import yaml

from resolver.errors import FlagError

MAX_UNIX_SOCKET_PATH = 107
"""``sun_path`` is 108 bytes on Linux, including the terminating NUL."""


def check_socket_dir(directory: str, name: str) -> Path:
    """The socket path ``directory/name.sock``, after checking it can be created there."""
    base = Path(directory).absolute()
    path = base / f"{name}.sock"
    size = len(os.fsencode(str(path)))
    if size > MAX_UNIX_SOCKET_PATH:
        raise FlagError("--socket-dir", f"the socket path {path} is {size} bytes, more than the "
                          f"{MAX_UNIX_SOCKET_PATH} a Unix socket allows; use a shorter --socket-dir or --name")
    existing = base
    while not existing.exists():  # the server creates missing directories: check the first that exists
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        what = "is a file, not a directory" if existing == base else f"cannot be created: {existing} is a file"
        raise FlagError("--socket-dir", f"{base} {what}; give a directory (it is created if missing)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FlagError("--socket-dir", f"{existing} is not writable by this user (uid {os.getuid()}); "
                          "give a directory this user may write, or fix its owner/mode")
    return path


def parse_host_port(flag: str, text: str, default_host: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise FlagError(flag, f"{text!r} is not HOST:PORT; give e.g. 0.0.0.0:5353")
    return host.strip("[]") or default_host, int(port)


def check_listen(flag: str, text: str, kinds: tuple[int, ...] = (socket.SOCK_DGRAM, socket.SOCK_STREAM),
                 ) -> tuple[str, int]:
    """Bind ``kinds`` (UDP and TCP) on ``text`` and release them: a taken port or a foreign address fails here."""
    host, port = parse_host_port(flag, text, "0.0.0.0")  # noqa: S104 - ":PORT" means every interface
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise FlagError(flag, f"cannot resolve {host!r} ({error.strerror}); give an IP address of this "
                          "machine, e.g. 0.0.0.0:5353") from None
    family, _, _, _, address = infos[0]
    for kind in kinds:
        probe = socket.socket(family, kind)
        try:
            if kind == socket.SOCK_STREAM:  # as asyncio's create_server does: TIME_WAIT is no conflict
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)  # with port 0 each transport gets its own free port: only the address is checked
        except OSError as error:
            raise FlagError(flag, listen_error(host, port, "UDP" if kind == socket.SOCK_DGRAM else "TCP",
                                                 error)) from None
        finally:
            probe.close()
    return host, port


def listen_error(host: str, port: int, transport: str, error: OSError) -> str:
    """One line for a failed bind: what and how to fix it."""
    where = f"{host}:{port}"
    if error.errno == errno.EADDRINUSE:
        return f"{where} ({transport}) is already in use by another process; choose another port or stop that process"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; listen on 0.0.0.0 or one of this host's addresses"
    if error.errno == errno.EACCES:
        return (f"not permitted to listen on {where} ({transport}); ports below 1024 need root or "
                "CAP_NET_BIND_SERVICE — use a port ≥ 1024 (e.g. 5353)")
    return f"cannot listen on {where} ({transport}): {error.strerror}"


def check_metrics_port(port: int) -> None:
    """The metrics/probe HTTP port (TCP, every interface, as it is served) must be free."""
    if not port:
        return
    if not 0 < port <= 65535:
        raise FlagError("--metrics-port", f"{port} is not a TCP port; give 1-65535, or 0 to turn metrics off")
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("0.0.0.0", port))  # noqa: S104 - where metrics are served
    except OSError as error:
        raise FlagError("--metrics-port", listen_error("0.0.0.0", port, "TCP", error)) from None  # noqa: S104
    finally:
        probe.close()


def check_kubeconfig(path: str | None) -> None:
    """A given ``--kubeconfig`` must be a readable YAML mapping (the kubernetes client prints 80 lines otherwise)."""
    if not path:
        return
    file = Path(path).expanduser()
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise FlagError("--kubeconfig", f"{file} does not exist; give the path of a kubeconfig file, or omit "
                          "--kubeconfig inside a cluster") from None
    except IsADirectoryError:
        raise FlagError("--kubeconfig", f"{file} is a directory; give the path of a kubeconfig file") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise FlagError("--kubeconfig", f"cannot read {file}: {reason}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise FlagError("--kubeconfig", f"{file} is not valid YAML{where}: {problem}; give a kubeconfig "
                          "(e.g. the output of `kubectl config view --raw`)") from None
    if not isinstance(document, dict) or not ({"clusters", "contexts", "users"} & document.keys()):
        raise FlagError("--kubeconfig", f"{file} is not a kubeconfig (expected a YAML mapping with clusters, "
                          "contexts and users); give a kubeconfig (e.g. the output of `kubectl config view --raw`)")


def _serve(args: argparse.Namespace) -> None:
    check_socket_dir(args.socket_dir, args.name)
    check_metrics_port(args.metrics_port)


def _dns(args: argparse.Namespace) -> None:
    check_listen("--listen", args.listen)
    check_metrics_port(args.metrics_port)


def _publish(args: argparse.Namespace) -> None:
    if getattr(args, "source", "kubernetes") == "kubernetes":
        check_kubeconfig(args.kubeconfig)
    check_metrics_port(args.metrics_port)


def _consul(args: argparse.Namespace) -> None:
    check_listen("--listen", args.listen, (socket.SOCK_STREAM,))  # HTTP: TCP only
    check_metrics_port(args.metrics_port)


CHECKS: dict[str, Callable[[argparse.Namespace], None]] = {"serve": _serve, "dns": _dns, "consul": _consul,
                                                            "publish": _publish}


def check(args: argparse.Namespace) -> None:
    """Run the subcommand's local checks; raises :class:`FlagError` naming the flag."""
    run = CHECKS.get(args.command)
    if run is not None:
        run(args)
