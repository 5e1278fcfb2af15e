"""Every subcommand in every broken environment: a non-zero exit, no traceback, and one line that
names the offending path, flag, user or endpoint *and* the fix — a catch-all "error" fails here.
And the tables behind it: every exception class of the package is in the one tree of
:mod:`resolver.errors` (drawn true in its docstring), and has a row in the one gRPC status table.

Real pieces only: our CLI as subprocesses, a real etcd over TLS with client-certificate auth, a
real etcd with users and roles, real sockets. Fast: unreachable endpoints are closed loopback
ports or a listener that never answers (with a 0.5 s etcdTimeout), never a default endpoint.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

import resolver
from resolver import errors
from resolver.component.grpc_status import STATUS_BY_ERROR, status_for
from resolver.local_etcd import EtcdTls, LocalEtcd, free_port
from resolver.local_tls import CertFiles, LocalCA


@dataclass
class World:
    tmp: Path
    ca: LocalCA
    stranger: LocalCA
    client: CertFiles
    other_key: Path
    tls_etcd: LocalEtcd
    auth_etcd: LocalEtcd
    silent_port: int


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("errors")
    ca, stranger = LocalCA(tmp / "ca"), LocalCA(tmp / "stranger")
    server, admin, client, other = ca.server(), ca.issue("root"), ca.issue("client"), ca.issue("other")
    tls_etcd = LocalEtcd(tmp / "tls-etcd", tls=EtcdTls(ca.files.cert, server.cert, server.key, admin.cert,
                                                       admin.key)).start()
    auth_etcd = LocalEtcd(tmp / "auth-etcd").start()
    for args in (("user", "add", "root", "--new-user-password=root-pw"), ("user", "grant-role", "root", "root"),
                 ("user", "add", "bob", "--new-user-password=bob-pw"), ("role", "add", "elsewhere"),
                 ("role", "grant-permission", "elsewhere", "read", "/elsewhere/", "--prefix=true"),
                 ("user", "grant-role", "bob", "elsewhere"), ("auth", "enable")):
        auth_etcd.etcdctl(*args)
    silent = socket.socket()  # accepts connections (the kernel does) and never answers: a frozen etcd
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        yield World(tmp, ca, stranger, client, other.key, tls_etcd, auth_etcd, silent.getsockname()[1])
    finally:
        silent.close()
        tls_etcd.cleanup()
        auth_etcd.cleanup()


def run(*args: str, timeout: float = 30, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "resolver", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *must_name: str) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    line = errors[0]
    for needle in must_name:
        assert needle in line, f"{needle!r} not named in: {line}"
    assert any(word in line for word in ("fix:", "; give", "; use", "; choose", "; listen", "give ", "use ")), line
    return line


# -- etcd: every subcommand that talks to etcd and exits, in each broken environment -------------------------

def _etcd_cases(w: World) -> dict[str, tuple[list[str], list[str]]]:
    """environment -> (settings, what the line must name)."""
    tls = w.tls_etcd.address
    refused = free_port()
    client = [f"etcdClientCert={w.client.cert}", f"etcdClientKey={w.client.key}"]
    return {
        "refused": ([f"etcdEndpoints=127.0.0.1:{refused}"], [f"127.0.0.1:{refused}", "connection refused",
                                                             "etcdEndpoints"]),
        "name not found": (["etcdEndpoints=nosuchhost.invalid:2379"], ["nosuchhost.invalid", "not found in DNS"]),
        "timeout": ([f"etcdEndpoints=127.0.0.1:{w.silent_port}"], [f"127.0.0.1:{w.silent_port}",
                                                                  "no answer within etcdTimeout=0.5s"]),
        "http against https": ([f"etcdEndpoints={tls}"], [tls, "probably serves TLS", "https://"]),
        "https against http": ([f"etcdEndpoints=https://{w.auth_etcd.address}", f"etcdCACert={w.ca.files.cert}"],
                               [w.auth_etcd.address, "does not speak TLS"]),
        "wrong CA": ([f"etcdEndpoints=https://{tls}", f"etcdCACert={w.stranger.files.cert}", *client],
                     [tls, "on our side", f"etcdCACert={w.stranger.files.cert}"]),
        "missing client cert": ([f"etcdEndpoints=https://{tls}", f"etcdCACert={w.ca.files.cert}"],
                                [tls, "on etcd's side", "none was sent", "etcdClientCert"]),
        "cert/key mismatch": ([f"etcdEndpoints=https://{tls}", f"etcdCACert={w.ca.files.cert}",
                               f"etcdClientCert={w.client.cert}", f"etcdClientKey={w.other_key}"],
                              [f"etcdClientKey={w.other_key}", "do not belong together"]),
        "wrong password": ([f"etcdEndpoints={w.auth_etcd.address}", "etcdUsername=bob", "etcdPassword=nope"],
                           [w.auth_etcd.address, "user 'bob'", "authentication failed", "etcdPassword"]),
        "no user": ([f"etcdEndpoints={w.auth_etcd.address}"], [w.auth_etcd.address, "etcdUsername"]),
        "permission denied": ([f"etcdEndpoints={w.auth_etcd.address}", "etcdUsername=bob", "etcdPassword=bob-pw"],
                              [w.auth_etcd.address, "PERMISSION_DENIED", "user 'bob'", "etcd-rbac"]),
    }


ETCD_ENVIRONMENTS = ["refused", "name not found", "timeout", "http against https", "https against http", "wrong CA",
                     "missing client cert", "cert/key mismatch", "wrong password", "no user", "permission denied"]
ETCD_COMMANDS = {"ls": ["ls"], "status": ["status"], "registry init": ["registry", "init"],
                 "etcd-rbac": ["etcd-rbac", "--apply", "--cluster", "cluster-1"]}


def test_permission_denied_names_the_key_range(world: World) -> None:
    result = run("ls", "--set", f"etcdEndpoints={world.auth_etcd.address}", "--set", "etcdUsername=bob",
                 "--set", "etcdPassword=bob-pw")
    assert_one_clear_line(result, "PERMISSION_DENIED for user 'bob' on '/dapr/nr/v1/apps/' and below")


@pytest.mark.parametrize("command", list(ETCD_COMMANDS))
@pytest.mark.parametrize("environment", ETCD_ENVIRONMENTS)
def test_etcd_errors_name_the_endpoint_the_cause_and_the_fix(world: World, command: str, environment: str) -> None:
    settings, must_name = _etcd_cases(world)[environment]
    # Only the timeout case needs a short deadline; the others fail at once on a quiet machine, and a
    # loaded one must not turn their real cause (a TLS handshake error, say) into a deadline.
    deadline = "etcdTimeout=500ms" if environment == "timeout" else "etcdTimeout=5s"
    sets = [arg for item in [*settings, deadline] for arg in ("--set", item)]
    started = time.monotonic()
    result = run(*ETCD_COMMANDS[command], *sets)
    assert_one_clear_line(result, "error: registry: etcd", *must_name)
    assert time.monotonic() - started < 30  # bounded: no default endpoint, no hang


def test_demo_against_an_unreachable_etcd_says_which_and_cleans_up() -> None:
    port = free_port()
    result = run("demo", "--set", f"etcdEndpoints=127.0.0.1:{port}", "--set", "etcdTimeout=500ms")
    assert_one_clear_line(result, f"127.0.0.1:{port}", "connection refused")
    assert "cleaned up" in result.stdout


def test_resolve_says_on_stderr_why_its_answer_is_a_fallback(world: World) -> None:
    result = run("resolve", "orders", "--set", f"etcdEndpoints={world.tls_etcd.address}",
                 "--set", "etcdTimeout=500ms", "--set", "initialSyncWait=300ms")
    assert result.returncode == 0 and result.stdout == "orders-dapr.default.svc.cluster.local:50002\n"
    assert "because the registry was not reachable" in result.stderr and "probably serves TLS" in result.stderr


# -- local resources: checked before any wait for etcd ----------------------------------------------------------

NO_ETCD = ["--set", "etcdEndpoints=127.0.0.1:1", "--set", "etcdTimeout=500ms", "--set", "initialSyncWait=60s"]


def test_serve_socket_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    line = assert_one_clear_line(run("serve", "--socket-dir", str(tmp_path / "afile"), *NO_ETCD),
                                 "--socket-dir", str(tmp_path / "afile"), "is a file")
    assert "give a directory" in line


def test_serve_socket_path_too_long(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    assert_one_clear_line(run("serve", "--socket-dir", str(deep), *NO_ETCD), "--socket-dir", str(deep), "107",
                          "use a shorter")
    assert not deep.exists()


def test_serve_socket_dir_not_writable(tmp_path: Path) -> None:
    """A read-only bind mount in a mount namespace of its own: unwritable even for root."""
    readonly = tmp_path / "ro"
    readonly.mkdir()
    script = (f"mount --bind -o ro {readonly} {readonly} && exec {sys.executable} -m resolver serve "
              f"--socket-dir {readonly} --set etcdEndpoints=127.0.0.1:1")
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=30,
                            check=False)
    assert_one_clear_line(result, "--socket-dir", str(readonly), "not writable")


def test_dns_listen_on_a_taken_port_fails_before_waiting_for_etcd() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = run("dns", "--listen", f"127.0.0.1:{port}", *NO_ETCD)
        elapsed = time.monotonic() - started
    assert_one_clear_line(result, "--listen", f"127.0.0.1:{port}", "already in use", "choose another port")
    assert elapsed < 30  # initialSyncWait is 60 s: the check came first (the margin is for a loaded machine)


def test_dns_listen_on_an_address_of_another_machine() -> None:
    result = run("dns", "--listen", "192.0.2.7:5353", *NO_ETCD)  # TEST-NET-1: never local
    assert_one_clear_line(result, "--listen", "192.0.2.7", "not an address of this machine", "0.0.0.0")


def test_dns_listen_that_is_not_host_port() -> None:
    assert_one_clear_line(run("dns", "--listen", "localhost", *NO_ETCD), "--listen", "'localhost'", "HOST:PORT")


@pytest.mark.parametrize("value", ["-1", "nan", "61"])
def test_dns_list_jitter_out_of_range(value: str) -> None:
    assert_one_clear_line(run("dns", "--listen", "127.0.0.1:0", "--list-jitter", value, *NO_ETCD),
                          "--list-jitter", "between 0 and 60")


@pytest.mark.parametrize(("content", "named"), [
    ("apiVersion: v1\nclusters: [\n  - name: x\n", "not valid YAML (line"),
    ("- just\n- a list\n", "not a kubeconfig"),
])
def test_publish_kubeconfig_that_is_not_a_kubeconfig(tmp_path: Path, content: str, named: str) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(content)
    result = run("publish", "--cluster", "cluster-1", "--kubeconfig", str(kubeconfig), *NO_ETCD)
    line = assert_one_clear_line(result, "--kubeconfig", str(kubeconfig), named)
    assert "kubectl config view --raw" in line and len(result.stderr.splitlines()) < 5


def test_publish_kubeconfig_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert_one_clear_line(run("publish", "--cluster", "cluster-1", "--kubeconfig", str(missing), *NO_ETCD),
                          "--kubeconfig", str(missing), "does not exist")


@pytest.mark.parametrize("command", [["serve", "--socket-dir", "{tmp}"], ["dns", "--listen", "127.0.0.1:0"],
                                     ["publish", "--cluster", "c1", "--source", "file", "--file", "{tmp}/inv.yaml"]])
def test_metrics_port_taken(tmp_path: Path, command: list[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [part.replace("{tmp}", str(tmp_path)) for part in command]
        result = run(*args, "--metrics-port", str(port), *NO_ETCD)
    assert_one_clear_line(result, "--metrics-port", str(port))


def test_rbac_password_file_missing(tmp_path: Path) -> None:
    result = run("etcd-rbac", "--apply", "--cluster", "cluster-1", "--password-file",
                 f"dapr-nr-resolver={tmp_path / 'missing'}", *NO_ETCD)
    assert_one_clear_line(result, "--password-file", str(tmp_path / "missing"))


def test_probe_without_a_target_names_the_flags() -> None:
    assert_one_clear_line(run("probe"), "--socket", "--dns")


def test_probe_of_a_socket_nobody_serves(tmp_path: Path) -> None:
    sock = tmp_path / "none.sock"
    assert_one_clear_line(run("probe", "--socket", str(sock)), str(sock))


# -- the exception tree and its gRPC table: every class decided, in one place -----------------------------------

PRIVATE_SIGNALS = {
    # control flow inside DnsAnswers ("look these hosts up first", "answer SERVFAIL"), caught in
    # the method that raises them
    "resolver.dns.answers._Pending", "resolver.dns.answers._Unknown",
    # raised from inside the JSON/YAML parsers' hooks, turned into a ValidationError around the parse
    "resolver.records.strict._Refused", "resolver.records.strict._DuplicateYamlKey",
    # an HTTP answer other than 200, raised inside the consul role's handler and answered there
    "resolver.consul.server._Refusal",
}
"""Not errors of the package: private signals that never reach a caller as themselves."""


def _every_module() -> None:
    """Import every module of the package, so that every exception class exists."""
    for info in pkgutil.walk_packages(resolver.__path__, "resolver."):
        if info.name != "resolver.__main__":  # importing it runs the command line
            importlib.import_module(info.name)


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined anywhere in the package, by qualified name."""
    _every_module()
    found: dict[str, type[BaseException]] = {}
    for name, module in list(sys.modules.items()):
        if name != "resolver" and not name.startswith("resolver."):
            continue
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == name:
                found[f"{name}.{value.__qualname__}"] = value
    stack: list[type[BaseException]] = [errors.ResolverError]
    while stack:  # subclasses nested in a class or a function are not module attributes
        cls = stack.pop()
        if cls.__module__.startswith("resolver"):
            found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        stack.extend(cls.__subclasses__())
    return found


def _tree() -> list[type[errors.ResolverError]]:
    return [cls for name, cls in _exception_classes().items()
            if name not in PRIVATE_SIGNALS and issubclass(cls, errors.ResolverError)]


def test_every_exception_class_is_in_the_one_tree_in_one_module() -> None:
    classes = _exception_classes()
    assert set(PRIVATE_SIGNALS) <= set(classes), "a private signal is gone: drop it from PRIVATE_SIGNALS"
    outside = sorted(name for name, cls in classes.items()
                     if name not in PRIVATE_SIGNALS and not issubclass(cls, errors.ResolverError))
    assert not outside, f"derive these from resolver.errors.ResolverError (or one of its classes): {outside}"
    elsewhere = sorted(name for name, cls in classes.items()
                       if name not in PRIVATE_SIGNALS and cls.__module__ != "resolver.errors")
    assert not elsewhere, f"define these in resolver/errors.py, the one map of the tree: {elsewhere}"


def test_every_class_of_the_tree_has_its_own_row_in_the_grpc_table() -> None:
    missing = sorted(cls.__name__ for cls in _tree() if cls not in STATUS_BY_ERROR)
    assert not missing, f"decide the gRPC status of {missing} in resolver/component/grpc_status.py"
    strangers = sorted(cls.__name__ for cls in STATUS_BY_ERROR if not issubclass(cls, errors.ResolverError))
    assert not strangers, f"the table is for the tree only: {strangers}"
    assert grpc.StatusCode.UNKNOWN not in STATUS_BY_ERROR.values()  # Dapr's contract: never UNKNOWN


def test_the_tree_drawn_in_the_errors_docstring_is_true() -> None:
    """Each drawn class is a class of the tree whose first base is the class drawn above it."""
    assert errors.__doc__ is not None
    drawn: dict[str, str | None] = {}
    parents: list[str] = []
    for line in errors.__doc__.splitlines():
        match = re.fullmatch(r" {4}((?:[│ ] {3})*)(?:[├└]── )?([A-Z]\w+)(?: \(.*\))?", line)
        if match is None:
            continue
        depth = len(match.group(1)) // 4 + (1 if "──" in line else 0)
        del parents[depth:]
        drawn[match.group(2)] = parents[-1] if parents else None
        parents.append(match.group(2))
    actual = {cls.__name__: (cls.__bases__[0].__name__ if cls is not errors.ResolverError else None)
              for cls in _tree()}
    assert drawn == actual


@pytest.mark.parametrize(("error", "code"), [
    (errors.ConfigValueError("etcdTimeout", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidRequest("id", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.RefusedAddress("address", "loopback"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotInitialized("x"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.NotFound("x"), grpc.StatusCode.NOT_FOUND),
    (errors.LimitReached("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.RegistrationRefused("x"), grpc.StatusCode.PERMISSION_DENIED),
    (errors.RegistryUnavailable("x"), grpc.StatusCode.UNAVAILABLE),
    (errors.LeaseNotFound("x"), grpc.StatusCode.INTERNAL),
    (errors.RegistryCompacted(7), grpc.StatusCode.INTERNAL),
    (ValueError("not ours"), grpc.StatusCode.INTERNAL),
])
def test_status_for(error: BaseException, code: grpc.StatusCode) -> None:
    assert status_for(error) is code


def test_a_subclass_from_outside_answers_as_its_nearest_ancestor() -> None:
    class Elsewhere(errors.NotFound):
        pass

    assert status_for(Elsewhere("x")) is grpc.StatusCode.NOT_FOUND


def test_the_inventory_errors_joined_the_tree_and_are_still_value_errors() -> None:
    """``except ValueError`` around inventory parsing (tests/test_fuzz.py) must still catch them."""
    for cls in (errors.InventoryError, errors.NoEndpoints):
        assert issubclass(cls, errors.ResolverError) and issubclass(cls, ValueError)


@pytest.mark.parametrize(("value", "expected"), [
    ("orders", "'orders'"),
    (None, "None"),
    ("x" * 200, "'" + "x" * 76 + "... (202 chars)"),
])
def test_shown_quotes_and_cuts_a_value(value: object, expected: str) -> None:
    assert errors.shown(value) == expected
