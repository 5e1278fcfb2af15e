"""A loopback TCP proxy the tests can cut and restore: a network partition between a client and etcd.

Cutting closes every open connection and refuses new ones until restored. A connection the
client is writing on sees a reset at its next write; one it only reads from (a Kubernetes
watch) hears nothing at all: the proxy's reader thread is blocked on it, so closing it does not
take effect — the client is left with a half-open stream, as after a partition.
:meth:`TcpProxy.drop` ends every open connection at once (the client reads the end of the
stream, then a reset), as a restarting load balancer does; new connections are not affected
(unless ``refuse``: then it is a cut whose open connections end at once).
:meth:`TcpProxy.stall` silences every open connection on purpose: it stays open but carries
nothing more either way (no data, no FIN, no reset), while new connections work.
:meth:`TcpProxy.cut_after` arms a cut at an exact byte offset of what etcd sends — a stream
broken in the middle of a catch-up, not only between responses.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._stalled: set[socket.socket] = set()
        self._clients: set[socket.socket] = set()  # the client's side of each connection
        self._cut = False
        self._closed = False
        self._cut_after: int | None = None
        self._downstream_bytes = 0
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True, name="tcp-proxy").start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut:
                _abort(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                _abort(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
                self._clients.add(client)
            for source, sink, downstream in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(source, sink, downstream), daemon=True).start()

    def cut_after(self, byte_count: int) -> None:
        """Cut every connection once etcd has sent ``byte_count`` more bytes (through any connection)."""
        with self._lock:
            self._downstream_bytes = 0
            self._cut_after = byte_count

    def _pipe(self, source: socket.socket, sink: socket.socket, downstream: bool = False) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if source in self._stalled:
                    continue  # read and dropped: the sender is not blocked, the receiver hears nothing
                if downstream and self._cut_after is not None:
                    with self._lock:
                        budget = self._cut_after - self._downstream_bytes
                        self._downstream_bytes += len(data)
                        fire = self._cut_after is not None and len(data) >= budget
                        if fire:
                            self._cut_after = None
                    if fire:
                        sink.sendall(data[:max(0, budget)])
                        self.cuts += 1
                        self.cut()
                        self.restore()
                        break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _abort(sock)
            with self._lock:
                self._sockets -= {source, sink}
                self._stalled -= {source, sink}
                self._clients -= {source, sink}

    def cut(self) -> None:
        """Close every connection and refuse new ones (one only read from goes silent: see the module docstring)."""
        self._cut = True
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _abort(sock)

    def drop(self, refuse: bool = False) -> None:
        """End every open connection now: shut down both ways (which also wakes the reader threads).

        ``refuse``: new connections are refused too, until :meth:`restore` — a cut whose open
        connections end at once rather than going silent."""
        if refuse:
            self._cut = True
        with self._lock:
            clients = list(self._clients)
            upstreams = list(self._sockets - self._clients)
        # Clients first: a reader thread woken by one side closes both, and a socket closed
        # before its shutdown would leave that side silent (see cut).
        for sock in [*clients, *upstreams]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def stall(self) -> None:
        """Every connection open now goes silent both ways without closing; new ones are not affected."""
        with self._lock:
            self._stalled |= self._sockets

    def restore(self) -> None:
        self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


def _abort(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()
