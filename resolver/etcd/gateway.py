"""The one place that talks to etcd through python3-etcd3, and maps its errors to ours.

Why a gateway instead of using ``etcd3`` directly everywhere:

* python3-etcd3 authenticates inside its constructor (a network call), and its simple-auth
  token expires after etcd's ``--auth-token-ttl``; the gateway creates clients lazily and
  drops them on ``UNAUTHENTICATED`` so the next call re-authenticates.
* Its endpoint failover marks a failed endpoint unusable for ``time_retry`` seconds (default
  300 s — with one endpoint that means five minutes of ``NoServerAvailableError`` after a blip),
  so endpoints here retry after :data:`ENDPOINT_RETRY_SECONDS`.
* Errors arrive as ``grpc.RpcError``, ``etcd3.exceptions.*`` or even ``ValueError`` ("Trying to use
  a failed node"); :func:`translate` turns all of them into :class:`RegistryUnavailable`
  (retry later) or :class:`RegistryError` (retrying will not help), so callers handle ours only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from typing import Any, NamedTuple, TypeVar

import etcd3
import etcd3.exceptions
import etcd3.utils
import grpc
from etcd3 import etcdrpc

from resolver.errors import LeaseNotFound, RegistryError, RegistryUnavailable
from resolver.etcd import etcd_errors
from resolver.etcd.connection import EtcdConnection
from resolver.observability import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
ENDPOINT_RETRY_SECONDS = 1.0
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
LIST_PAGE_SIZE = 20_000
"""Keys per list page. etcd counts the rest of the range on every page, so small pages make a
big list quadratic (100k keys: 1.8 s at 2,000 per page, ~1.6 s at 20,000 or 50,000 alike); big
pages cost memory in etcd and here for every list in flight (10 full-mirror readers listing
100k keys at once: etcd peaked at 379 MB with 50,000-key pages, 314 MB with 20,000; each reader
holds 110 MB after the list instead of 132 MB). 20,000 records of at most 4 KiB
(MAX_RECORD_BYTES) stay under MAX_MESSAGE_BYTES."""
MAX_TXN_OPS = 128  # etcd's default --max-txn-ops

# Keepalive pings find a dead or frozen etcd (SIGSTOP, a partition) under a quiet watch stream.
# etcd answers pings more often than its --grpc-keepalive-min-time (5 s) — or any ping on a
# connection without an active stream (it does not set PermitWithoutStream) — with GOAWAY
# "too_many_pings", so pings go out every 10 s and only while a call is active.
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]

_UNAVAILABLE_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,  # expired auth token: a fresh client re-authenticates
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,  # etcd answers UNKNOWN for "leader changed" / "no leader"
}
_UNAVAILABLE_EXCEPTIONS = (
    etcd3.exceptions.ConnectionFailedError,
    etcd3.exceptions.ConnectionTimeoutError,
    etcd3.exceptions.NoServerAvailableError,
    etcd3.exceptions.WatchTimedOut,
    etcd3.exceptions.InternalServerError,
)


class EtcdHeader(NamedTuple):
    """What every etcd answer says about the store: its revision, and which cluster answered."""

    revision: int
    cluster_id: int


def translate(error: BaseException, what: str, connection: EtcdConnection | None = None,
              key: str = "") -> RegistryError:
    """Map any error raised by grpc/etcd3 while doing ``what`` to our hierarchy.

    The message is one line naming the endpoint, the cause and the fix
    (:mod:`resolver.etcd.etcd_errors`); ``connection`` (which endpoints, user, TLS files) and
    ``key`` make it precise — without them the endpoint comes from gRPC's own detail text.
    Retryable or not is decided by the gRPC code alone, as before, so callers' retry loops are
    unaffected by the wording.
    """
    if isinstance(error, RegistryError):
        return error
    if isinstance(error, OSError):
        return RegistryError(f"etcd {what} failed: {error}")
    if _closed_under_us(error):
        return RegistryUnavailable(f"etcd {what} failed: the connection was reset by a failed request twice "
                                   "in a row; retrying")
    recognised = isinstance(error, grpc.RpcError | etcd3.exceptions.Etcd3Exception) \
        or (isinstance(error, ValueError) and "failed node" in str(error))
    if not recognised:
        raise error
    message = etcd_errors.diagnose(error, connection, key).message(what)
    if isinstance(error, grpc.RpcError):
        code = error.code() if callable(getattr(error, "code", None)) else None
        details = (error.details() if callable(getattr(error, "details", None)) else "") or ""
        if code in _UNAVAILABLE_CODES:
            return RegistryUnavailable(message)
        if code == grpc.StatusCode.NOT_FOUND and "lease not found" in details:
            return LeaseNotFound(message)
        return RegistryError(message)
    if isinstance(error, (*_UNAVAILABLE_EXCEPTIONS, ValueError)):
        return RegistryUnavailable(message)
    return RegistryError(message)


def _closed_under_us(error: BaseException) -> bool:
    """grpc's refusal to start a call on a channel another thread closed (never sent)."""
    return isinstance(error, ValueError) and "closed channel" in str(error)


def _needs_new_client(error: BaseException) -> bool:
    if isinstance(error, grpc.RpcError) and callable(getattr(error, "code", None)):
        return error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE)
    return isinstance(error, etcd3.exceptions.NoServerAvailableError | etcd3.exceptions.ConnectionFailedError)


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


class EtcdGateway:
    """A lazily (re)connected python3-etcd3 client for one :class:`EtcdConnection`.

    Thread-safe: the client object is shared; python3-etcd3 calls are plain unary gRPC calls.
    """

    def __init__(self, connection: EtcdConnection) -> None:
        self.connection = connection
        self.timeout = connection.timeout
        self._lock = threading.Lock()
        self._client: etcd3.MultiEndpointEtcd3Client | None = None

    # -- connection -----------------------------------------------------------------------

    def _credentials(self) -> grpc.ChannelCredentials:
        conn = self.connection
        try:
            return grpc.ssl_channel_credentials(
                root_certificates=_read(conn.ca_cert) if conn.ca_cert else None,
                private_key=_read(conn.client_key) if conn.client_key else None,
                certificate_chain=_read(conn.client_cert) if conn.client_cert else None,
            )
        except OSError as error:
            raise RegistryError(f"cannot read etcd TLS file: {error}") from None

    def _connect(self) -> etcd3.MultiEndpointEtcd3Client:
        conn = self.connection
        credentials = self._credentials() if conn.tls else None
        endpoints = [
            etcd3.Endpoint(endpoint.host, endpoint.port, secure=conn.tls, creds=credentials,
                           time_retry=ENDPOINT_RETRY_SECONDS, opts=_CHANNEL_OPTIONS)
            for endpoint in conn.endpoints
        ]
        try:
            client = etcd3.MultiEndpointEtcd3Client(
                endpoints=endpoints, timeout=self.timeout, failover=True,
                user=conn.username or None, password=conn.password or None,
            )
        except Exception as error:
            for endpoint in endpoints:
                endpoint.close()
            raise translate(error, "authenticate", self.connection) from None
        if not conn.tls:
            # python3-etcd3 sends the auth token both as metadata and as call credentials; gRPC
            # refuses call credentials on a plain channel ("insufficient security level"), so on
            # plain channels the token travels as metadata only — which is what etcd reads.
            client.call_credentials = None
        return client

    def client(self) -> etcd3.MultiEndpointEtcd3Client:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def reset(self) -> None:
        """Drop the client; the next call connects (and authenticates) afresh."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken channel must not mask the original error
                log.debug("closing etcd client failed", exc_info=True)

    def close(self) -> None:
        self.reset()

    def call(self, what: str, operation: Callable[[etcd3.MultiEndpointEtcd3Client], T], key: str = "") -> T:
        """Run ``operation(client)``; every dependency error comes out as a RegistryError naming ``key``.

        Threads share the client, and one that sees etcd fail drops it (:meth:`reset`) while
        another may be about to use it: gRPC then refuses the call before sending anything
        ("closed channel"), so it is safe to run once more on a fresh client. Seen as an INTERNAL
        error of a self-registering Init while the reader, on another thread, lost etcd.
        """
        for attempt in (1, 2):
            client = self.client()
            metrics.ETCD_REQUESTS.labels(what).inc()
            try:
                return operation(client)
            except Exception as error:
                if _closed_under_us(error) and attempt == 1:
                    continue
                if _needs_new_client(error):
                    self.reset()
                raise translate(error, what, self.connection, key) from None
        raise AssertionError("unreachable: the second attempt returns or raises")

    def stream_error(self, error: BaseException, what: str) -> RegistryError:
        """:meth:`call`'s error handling for the streams we run ourselves (:meth:`stream_call`):
        python3-etcd3 never sees their failures, so without this a client whose endpoint died
        kept using it — its failover marks an endpoint failed only for ``time_retry`` (1 s) and
        only on its own calls — and a publisher whose retries were further apart than that
        stayed on a killed etcd member for good. Dropping the client makes the next connect pick
        an endpoint afresh. Returns the translated error to raise."""
        if _needs_new_client(error):
            self.reset()
        return translate(error, what, self.connection)

    def stream_call(self) -> tuple[grpc.Channel, dict[str, Any]]:
        """A channel and the per-call auth arguments, for streams python3-etcd3 lacks or gets wrong."""
        client = self.client()
        try:
            channel = client.channel
        except Exception as error:
            raise translate(error, "connect", self.connection) from None
        return channel, {"credentials": client.call_credentials, "metadata": client.metadata}

    # -- reads ----------------------------------------------------------------------------

    def status(self, key: str) -> EtcdHeader:
        """The cluster's identity and current revision: a count-only read of ``key``, which must be
        one the credentials may read (with per-cluster RBAC, a key under the registry prefix)."""
        response = self.call("status", lambda c: c.get_response(key, count_only=True), key)
        return EtcdHeader(int(response.header.revision), int(response.header.cluster_id))

    def list_prefix(self, prefix: str, page_size: int = LIST_PAGE_SIZE, at_revision: int | None = None,
                    ) -> tuple[EtcdHeader, Iterator[list[tuple[bytes, bytes, int]]]]:
        """A consistent paged read of ``prefix``: ``(header, pages of (key, value, lease))``.

        The first page fixes the revision; later pages read at that revision, so the whole
        list is one snapshot even when it spans many requests (and stays under the gRPC
        message limit for any registry size).
        """
        start = prefix.encode()
        end = etcd3.utils.prefix_range_end(start)
        first = self.call("list", lambda c: c.get_range_response(start, end, limit=page_size,
                                                                 revision=at_revision or None), prefix)
        revision = at_revision or int(first.header.revision)
        header = EtcdHeader(revision, int(first.header.cluster_id))

        def fetch(after: bytes) -> Any:
            return self.call("list", lambda c: c.get_range_response(after, end, limit=page_size, revision=revision),
                             prefix)

        def pages() -> Iterator[list[tuple[bytes, bytes, int]]]:
            # The next page is requested while the caller digests this one (etcd's work and the
            # transfer overlap our parsing: ~30 % off a 100k-record cold start).
            response = first
            with futures.ThreadPoolExecutor(1, thread_name_prefix="etcd-list") as prefetch:
                while True:
                    kvs = [(kv.key, kv.value, kv.lease) for kv in response.kvs]
                    upcoming = prefetch.submit(fetch, kvs[-1][0] + b"\0") if response.more and kvs else None
                    yield kvs
                    if upcoming is None:
                        return
                    response = upcoming.result()

        return header, pages()

    def get(self, key: str) -> bytes | None:
        value, _ = self.call("get", lambda c: c.get(key), key)
        return value  # type: ignore[no-any-return]

    # -- writes ---------------------------------------------------------------------------

    def put(self, key: str, value: bytes, lease: int | None = None) -> None:
        self.call("put", lambda c: c.put(key, value, lease=lease), key)

    def delete(self, key: str) -> bool:
        return bool(self.call("delete", lambda c: c.delete(key), key))

    def delete_prefix(self, prefix: str) -> int:
        response = self.call("delete", lambda c: c.delete_prefix(prefix), prefix)
        return int(response.deleted)

    def apply(self, puts: Sequence[tuple[str, bytes, int | None]], deletes: Sequence[str]) -> None:
        """Write puts and deletes in transactions of at most :data:`MAX_TXN_OPS` operations."""
        ops: list[Any] = [etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
            key=key.encode(), value=value, lease=lease or 0)) for key, value, lease in puts]
        ops += [etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=key.encode()))
                for key in deletes]
        for start in range(0, len(ops), MAX_TXN_OPS):
            request = etcdrpc.TxnRequest(success=ops[start : start + MAX_TXN_OPS])

            def commit(c: etcd3.MultiEndpointEtcd3Client, request: Any = request) -> Any:
                return c.kvstub.Txn(request, c.timeout, credentials=c.call_credentials, metadata=c.metadata)

            self.call("transaction", commit)

    def create_if_absent(self, key: str, value: bytes, lease: int) -> bool:
        """Put ``key`` only if it does not exist (leader election); True if we created it."""
        succeeded, _ = self.call("create", lambda c: c.transaction(
            compare=[c.transactions.create(key) == 0],
            success=[c.transactions.put(key, value, lease=lease)], failure=[]), key)
        return bool(succeeded)

    def put_if_unchanged(self, key: str, value: bytes, lease: int, mod_revision: int) -> bool:
        """Put ``key`` only if nobody wrote it since ``mod_revision`` (0: only if absent); True if put.

        etcd compares a missing key as one with every revision 0, so 0 means "create"."""
        succeeded, _ = self.call("compare-and-put", lambda c: c.transaction(
            compare=[c.transactions.mod(key) == mod_revision],
            success=[c.transactions.put(key, value, lease=lease)], failure=[]), key)
        return bool(succeeded)

    # -- leases ---------------------------------------------------------------------------

    def count_prefix(self, prefix: str) -> int:
        """How many keys lie under ``prefix``: a count-only read (no keys or values cross the wire)."""
        start = prefix.encode()
        end = etcd3.utils.prefix_range_end(start)
        return int(self.call("count", lambda c: c.get_range_response(start, end, count_only=True), prefix).count)

    def may_put(self, key: str, value: bytes) -> None:
        """Ask etcd whether these credentials may write ``key``, without writing it.

        A transaction whose comparison can never hold (version < 0) runs no operation, but etcd
        checks the permissions of *every* operation of both branches first: a read-only user gets
        PERMISSION_DENIED, bad credentials fail authentication, an existing value stays untouched.
        """
        self.call("self-registration check", lambda c: c.transaction(
            compare=[c.transactions.version(key) < 0], success=[c.transactions.put(key, value)], failure=[]), key)

    def grant(self, ttl: int) -> int:
        return int(self.call("lease grant", lambda c: c.lease(ttl)).id)

    def keepalive(self, lease_id: int) -> int:
        """Refresh a lease once; returns the remaining TTL, ``<= 0`` when the lease is gone."""
        def refresh(c: etcd3.MultiEndpointEtcd3Client) -> int:
            for response in c.refresh_lease(lease_id):
                return int(response.TTL)
            return 0
        return self.call("lease keep-alive", refresh)

    def lease_ttl(self, lease_id: int) -> int:
        """Seconds the lease has left (-1 once it has expired)."""
        return int(self.call("lease ttl", lambda c: c.get_lease_info(lease_id)).TTL)

    def revoke(self, lease_id: int) -> None:
        """Revoke a lease (deleting its keys); a lease that is already gone is not an error."""
        with contextlib.suppress(LeaseNotFound):
            self.call("lease revoke", lambda c: c.revoke_lease(lease_id))

    def compact(self, revision: int) -> None:
        self.call("compact", lambda c: c.compact(revision, physical=True))
