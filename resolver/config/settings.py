"""The settings of every role, as one documented dataclass, and the one function that loads them.

Sources, lowest precedence first: defaults, ``--config`` file, ``DAPR_NR_*`` environment,
``--set key=value``, then (for the component) Init's ``configuration`` JSON and Init's
metadata properties. Each source is a :class:`Layer`; :func:`load_settings` folds them, so a
later ``Init`` re-initializes an instance with its own settings layered over the start-up ones.
A bad value of a known key raises :class:`~resolver.errors.ConfigValueError` naming the key
and the source (the component answers ``INVALID_ARGUMENT``). An *unknown* key is only a
warning naming the closest known key, counted in ``dapr_nr_config_unknown_keys_total``:
every sidecar of a namespace reads one shared Dapr Configuration and daprd treats a failed
Init as fatal, so a key added by a newer release must not crash older sidecars mid-upgrade.

Process-level limits (``maxInstances``…) are read from start-up sources only: an Init that
sets one is refused, or a hostile client could raise its own cap.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from resolver.config import traffic, values
from resolver.config.traffic import AppPolicy, PolicyName
from resolver.config.values import ClusterCIDRs, Template, duration, integer
from resolver.errors import ConfigValueError, FlagError, ValidationError, shown
from resolver.etcd.connection import EtcdConnection, EtcdEndpoint
from resolver.observability import metrics
from resolver.observability.throttle import Throttle
from resolver.records import strict
from resolver.records.addresses import AddressPolicy

log = logging.getLogger(__name__)

ENV_PREFIX = "DAPR_NR_"


MAX_FILE_BYTES = 1024 * 1024
"""Largest ``--config`` file read (a configuration is a few KiB)."""


class Layer(NamedTuple):
    """One source of settings: a name for error messages and its camelCase key/value pairs.

    ``from_init`` marks layers a client sent (Init): they may not set process-level keys.
    """

    source: str
    values: Mapping[str, object]
    from_init: bool = False


def _key(key: str, parse: Callable[[object], Any], doc: str, *, process: bool = False) -> dict[str, Any]:
    return {"key": key, "parse": parse, "doc": doc, "process": process}


@dataclass(frozen=True)
class ServeLimits:
    """The component's process-level caps (``serve``), from start-up configuration only."""

    max_instances: int
    max_registries: int
    max_streams: int
    max_sync_waits: int


@dataclass(frozen=True)
class Settings:
    """Every configuration key (docs/configuration.md). Field metadata holds the key, its parser and its doc."""

    etcd_endpoints: tuple[EtcdEndpoint, ...] = field(
        default=(EtcdEndpoint("127.0.0.1", 2379),),
        metadata=_key("etcdEndpoints", values.parse_endpoints,
                      "comma-separated host:port or https://host:port"))
    etcd_username: str = field(default="", metadata=_key("etcdUsername", values.parse_string, "etcd user"))
    etcd_password: str = field(default="", repr=False,
                               metadata=_key("etcdPassword", values.parse_secret, "etcd password"))
    etcd_ca_cert: str = field(default="", metadata=_key("etcdCACert", values.parse_string,
                                                        "CA bundle that signed etcd's server certificate"))
    etcd_client_cert: str = field(default="", metadata=_key("etcdClientCert", values.parse_string,
                                                            "client certificate for etcd mTLS"))
    etcd_client_key: str = field(default="", metadata=_key("etcdClientKey", values.parse_string,
                                                           "client key for etcd mTLS"))
    etcd_timeout: float = field(default=5.0, metadata=_key("etcdTimeout", duration(0.1, 60.0),
                                                           "per-request etcd timeout"))
    prefix: str = field(default="/dapr/nr/v1", metadata=_key("prefix", values.parse_prefix,
                                                             "root of all registry keys"))
    cluster_name: str = field(default="", metadata=_key("clusterName", values.parse_optional_label,
                                                        "the caller's cluster (drives locality)"))
    cluster_domain: str = field(default="cluster.local", metadata=_key(
        "clusterDomain", values.parse_cluster_domain, "cluster DNS domain for the fallback name"))
    template: Template = field(
        default=Template("{id}-dapr.{namespace}.svc.{clusterDomain}:{port}"),
        metadata=_key("template", values.parse_template, "fallback address format"))
    fallback: str = field(default="dns", metadata=_key(
        "fallback", values.parse_fallback, "dns (use template) or none (NOT_FOUND)"))
    policy: PolicyName = field(default=PolicyName.FAILOVER, metadata=_key(
        "policy", traffic.parse_policy, "Locality, FailOver or ActiveActive"))
    cluster_weights: Mapping[str, int] = field(default_factory=dict, metadata=_key(
        "clusterWeights", traffic.parse_weights, "cluster=weight,…; unlisted clusters weigh 100; 0 excludes"))
    policies: Mapping[str, AppPolicy] = field(default_factory=dict, metadata=_key(
        "policies", traffic.parse_policies, 'per-app overrides, JSON {"ns/app": {"policy": …}}'))
    initial_sync_wait: float = field(default=3.0, metadata=_key(
        "initialSyncWait", duration(0.0, 60.0), "how long a resolve waits for the first registry sync"))
    failover_order: tuple[str, ...] = field(default=(), metadata=_key(
        "failoverOrder", traffic.parse_cluster_list, "clusters FailOver tries, in order, before the rest"))
    self_register: bool = field(default=False, metadata=_key(
        "selfRegister", values.parse_bool, "register the calling sidecar itself under clusterName"))
    stale_after: float = field(default=0.0, metadata=_key(
        "staleAfter", duration(0.0, 7 * 24 * 3600.0), "drop remote endpoints after etcd is unreachable this long"))
    cache_scope: str = field(default="all", metadata=_key(
        "cacheScope", values.parse_cache_scope, "the component's cache: all (a full mirror of the registry) or "
        "onDemand (only the apps it is asked about; needs every cluster announced under clusters/); the DNS "
        "bridge always mirrors all"))
    dns_ttl: float = field(default=5.0, metadata=_key(
        "dnsTTL", duration(0.0, 3600.0), "TTL of DNS bridge answers"))
    cluster_cidrs: ClusterCIDRs = field(default=ClusterCIDRs(), metadata=_key(
        "clusterCIDRs", values.parse_cluster_cidrs,
        "per-cluster address allowlists, cluster=CIDR,…; cluster=hostnames keeps host names"))
    allow_loopback: bool = field(default=False, metadata=_key(
        "allowLoopback", values.parse_bool, "accept loopback addresses in the registry (single machine only)"))
    reachability: str = field(default="auto", metadata=_key(
        "reachability", values.choice("auto", "on", "off"), "probe other clusters' endpoints and leave the "
        "unreachable out of answers: auto is on in the dns and consul roles, off in the component"))
    probe_interval: float = field(default=2.0, metadata=_key(
        "probeInterval", duration(0.5, 300.0), "time between probe rounds (±20% jitter)"))
    probe_timeout: float = field(default=1.0, metadata=_key(
        "probeTimeout", duration(0.05, 30.0), "a probe's TCP connect deadline"))
    probe_sample: int = field(default=3, metadata=_key(
        "probeSample", integer(1, 100), "endpoints probed per cluster per round"))
    probe_budget: int = field(default=200, metadata=_key(
        "probeBudget", integer(1, 100_000), "probe connections per second, whole process", process=True))
    probe_demand_window: float = field(default=60.0, metadata=_key(
        "probeDemandWindow", duration(1.0, 3600.0), "probe only clusters of apps asked about this recently"))
    unreachable_after: int = field(default=2, metadata=_key(
        "unreachableAfter", integer(1, 100), "rounds with every probe of a cluster failing before it is unreachable"))
    reachable_after: int = field(default=2, metadata=_key(
        "reachableAfter", integer(1, 100), "good rounds before an unreachable cluster is back"))
    eject_after: int = field(default=2, metadata=_key(
        "ejectAfter", integer(1, 100), "consecutive failed probes that eject one endpoint of a reachable cluster"))
    ejection_time: float = field(default=30.0, metadata=_key(
        "ejectionTime", duration(1.0, 3600.0), "an ejection lasts this × the endpoint's ejection count (≤ 10×)"))
    max_ejected_percent: int = field(default=10, metadata=_key(
        "maxEjectedPercent", integer(0, 100), "most of a cluster's endpoints ejected at once (at least one)"))
    zone: str = field(default="", metadata=_key(
        "zone", values.parse_label_value, "the caller's zone (component; else the zone of its own registry record)"))
    zone_aware: bool = field(default=False, metadata=_key(
        "zoneAware", values.parse_bool, "prefer endpoints in the caller's zone within the policy's choice"))
    zone_min_endpoints: int = field(default=2, metadata=_key(
        "zoneMinEndpoints", integer(1, 1000), "leave the zone when it has fewer endpoints than this"))
    zone_min_percent: int = field(default=20, metadata=_key(
        "zoneMinPercent", integer(0, 100), "leave the zone when it holds less than this share of the candidates"))
    max_instances: int = field(default=64, metadata=_key(
        "maxInstances", integer(1, 10_000), "component instances per serve process", process=True))
    max_registries: int = field(default=8, metadata=_key(
        "maxRegistries", integer(1, 1_000), "distinct registries (etcd settings) per serve process",
        process=True))
    max_streams: int = field(default=256, metadata=_key(
        "maxStreams", integer(1, 4_096), "concurrently open streaming calls (reflection, health watch)",
        process=True))
    max_sync_waits: int = field(default=32, metadata=_key(
        "maxSyncWaits", integer(0, 1_024), "resolves waiting for a first registry sync at once; "
        "more get the fallback at once", process=True))

    @functools.cached_property
    def address_policy(self) -> AddressPolicy:
        """Which registry addresses may be served or published (shared contract, addresses.py)."""
        return AddressPolicy(self.cluster_cidrs.cidrs, self.cluster_cidrs.hostname_clusters, self.allow_loopback)

    @property
    def serve_limits(self) -> ServeLimits:
        return ServeLimits(self.max_instances, self.max_registries, self.max_streams, self.max_sync_waits)

    @property
    def etcd(self) -> EtcdConnection:
        """The etcd connection these settings describe (hashable: readers are shared by it)."""
        return EtcdConnection(
            endpoints=self.etcd_endpoints, prefix=self.prefix, timeout=self.etcd_timeout,
            username=self.etcd_username, password=self.etcd_password, ca_cert=self.etcd_ca_cert,
            client_cert=self.etcd_client_cert, client_key=self.etcd_client_key,
        )

    def explain(self) -> str:
        """``key=value`` of the endpoints and every non-default key, secrets masked (for logs)."""
        shown = []
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value == getattr(DEFAULT_SETTINGS, spec.name) and spec.name != "etcd_endpoints":
                continue
            if spec.name == "etcd_password":
                text = "***"
            elif isinstance(value, tuple):
                text = ",".join(map(str, value))
            elif isinstance(value, Template | ClusterCIDRs):
                text = value.text
            elif isinstance(value, Mapping):
                text = json.dumps({k: v if isinstance(v, int) else repr(v) for k, v in value.items()})
            else:
                text = str(value)
            shown.append(f"{spec.metadata['key']}={text}")
        return " ".join(shown)


DEFAULT_WEIGHT = 100
_FIELDS_BY_KEY = {spec.metadata["key"]: spec for spec in dataclasses.fields(Settings)}
KEYS: tuple[str, ...] = tuple(_FIELDS_BY_KEY)


def env_name(key: str) -> str:
    """``etcdCACert`` → ``DAPR_NR_ETCD_CA_CERT``; ``dnsTTL`` → ``DAPR_NR_DNS_TTL``."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", key)
    return ENV_PREFIX + snake.upper()


_KEYS_BY_ENV = {env_name(key): key for key in KEYS}
PROCESS_KEYS: tuple[str, ...] = tuple(key for key, spec in _FIELDS_BY_KEY.items() if spec.metadata["process"])
UNKNOWN_KEY_LOG_INTERVAL = 60.0
UNKNOWN_KEY_LOG_BURST = 20
_unknown_log = Throttle(UNKNOWN_KEY_LOG_INTERVAL, burst=UNKNOWN_KEY_LOG_BURST)


def closest_key(key: str, known: Iterable[str] = KEYS) -> str | None:
    """The known key ``key`` is most likely a typo of (case-insensitive first), or None."""
    known = list(known)
    for candidate in known:
        if candidate.lower() == key.lower():
            return candidate
    matches = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return matches[0] if matches else None


def warn_unknown_key(key: str, source: str, known: Iterable[str] = KEYS) -> None:
    """Log and count a key this release does not know.

    Each (key, source) is logged at most once a minute, and at most
    :data:`UNKNOWN_KEY_LOG_BURST` distinct ones a minute in all: an Init carrying thousands of
    made-up keys is counted in full but logged in a few lines.
    """
    metrics.CONFIG_UNKNOWN_KEYS.labels(source.split(" ", maxsplit=1)[0]).inc()
    memo = (key[:100], source[:100])
    if not _unknown_log.allow(memo):
        return
    hint = closest_key(key[:100], known)  # difflib is not free: only for a line that is logged
    log.warning("ignoring unknown configuration key %s (from %s)%s; a newer release may know it%s", shown(key),
                source, f": did you mean {hint!r}?" if hint else "", _unknown_log.suppressed_note(memo))


def load_settings(layers: Iterable[Layer]) -> Settings:
    """Fold ``layers`` (lowest precedence first) over the defaults and validate the result."""
    chosen: dict[str, tuple[object, str]] = {}
    for layer in layers:
        for raw_key, raw in layer.values.items():
            key = raw_key if isinstance(raw_key, str) else str(raw_key)
            spec = _FIELDS_BY_KEY.get(key)
            if spec is None:
                warn_unknown_key(key, layer.source)
                continue
            if spec.metadata["process"] and layer.from_init:
                raise ConfigValueError(key, "a process-level limit cannot be set through Init; set it when "
                                       f"starting serve (--set {key}=…, {env_name(key)} or --config)", layer.source)
            try:
                parsed = spec.metadata["parse"](raw)
            except ValueError as error:
                raise ConfigValueError(key, str(error), layer.source) from None
            except (RecursionError, TypeError, OverflowError, AttributeError) as error:
                raise ConfigValueError(key, f"unusable value ({type(error).__name__})", layer.source) from None
            chosen[spec.name] = (parsed, layer.source)
    overrides: dict[str, Any] = {name: value for name, (value, _) in chosen.items()}
    settings = dataclasses.replace(DEFAULT_SETTINGS, **overrides)
    _validate_together(settings, {name: source for name, (_, source) in chosen.items()})
    return settings


def _validate_together(settings: Settings, sources: Mapping[str, str]) -> None:
    """Checks that span keys; the error names the key the user most likely has to fix."""
    if bool(settings.etcd_username) != bool(settings.etcd_password):
        missing = "etcdPassword" if settings.etcd_username else "etcdUsername"
        raise ConfigValueError(missing, "etcdUsername and etcdPassword must be set together",
                          sources.get("etcd_username") or sources.get("etcd_password", ""))
    if bool(settings.etcd_client_cert) != bool(settings.etcd_client_key):
        missing = "etcdClientKey" if settings.etcd_client_cert else "etcdClientCert"
        raise ConfigValueError(missing, "etcdClientCert and etcdClientKey must be set together")
    for name in ("etcd_ca_cert", "etcd_client_cert", "etcd_client_key"):
        path = getattr(settings, name)
        if path and not Path(path).is_file():
            key = Settings.__dataclass_fields__[name].metadata["key"]
            raise ConfigValueError(key, f"file {shown(path)} does not exist or is not a file", sources.get(name, ""))
    if settings.self_register and not settings.cluster_name:
        raise ConfigValueError("clusterName", "selfRegister=true needs clusterName to register under",
                          sources.get("self_register", ""))


DEFAULT_SETTINGS = Settings()


# --- sources ---------------------------------------------------------------------------------


def file_layer(path: str | Path) -> Layer:
    """A YAML (or JSON) file of camelCase keys; a Dapr ``Configuration`` document also works.

    Size is checked before parsing and nesting right after (iteratively), and the parser's
    own recursion is caught, so a hostile file ends in one line naming ``--config`` and the file;
    a key written twice is refused like any untrusted document's (:mod:`resolver.records.strict`).
    """
    source = f"config file {path}"
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise FlagError("--config", f"cannot read {path}: {error.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise FlagError("--config", f"{path} is larger than {MAX_FILE_BYTES // 1024} KiB; is it the right file?")
    try:
        # The one strict loader (a key written twice is refused, naming it and its line); the
        # pure-Python base, as ever: its depth error is reported, where libyaml's says only "flow level".
        document = strict.load_yaml(data, str(path), base=yaml.SafeLoader)
        values.check_structure(document, finite=False)  # a NaN is refused by its key's parser, named
    except ValidationError as error:
        raise FlagError("--config", f"{path}: {error.message}") from None
    except ValueError as error:
        raise FlagError("--config", f"{path}: {error}") from None
    if document is None:
        document = {}
    if isinstance(document, dict) and document.get("kind") == "Configuration":
        spec = document.get("spec")
        resolution = spec.get("nameResolution") if isinstance(spec, dict) else None
        document = (resolution.get("configuration") if isinstance(resolution, dict) else None) or {}
    if not isinstance(document, dict):
        raise FlagError("--config", f"{path}: expected a mapping of keys, got {type(document).__name__}")
    return Layer(source, document)


def env_layer(environ: Mapping[str, str] | None = None) -> Layer:
    """``DAPR_NR_<UPPER_SNAKE>`` variables; an unknown ``DAPR_NR_`` name is a warning (typos)."""
    environ = os.environ if environ is None else environ
    found: dict[str, object] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = _KEYS_BY_ENV.get(name)
        if key is None:
            warn_unknown_key(name, "environment", _KEYS_BY_ENV)
            continue
        found[key] = value
    return Layer("environment", found)


def set_layer(assignments: Iterable[str]) -> Layer:
    """``--set key=value`` arguments."""
    found: dict[str, object] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise FlagError("--set", f"{shown(assignment)}: expected KEY=VALUE, e.g. --set etcdTimeout=5s")
        found[key.strip()] = value
    return Layer("--set", found)


def init_layers(configuration_json: str, properties: Mapping[str, str]) -> list[Layer]:
    """Init's ``configuration`` JSON, then its metadata ``properties`` (which win).

    The JSON is a client's: decoded by the one strict decoder, so a key written twice is
    refused (naming it) rather than silently meaning its last value.
    """
    layers = []
    if configuration_json.strip():
        try:
            configuration = values.load_json(configuration_json)
        except ValueError as error:
            raise ConfigValueError("configuration", str(error), "Init") from None
        if configuration is None:
            configuration = {}
        if not isinstance(configuration, dict):
            raise ConfigValueError("configuration", f"expected a JSON object, got {type(configuration).__name__}",
                                   "Init")
        layers.append(Layer("Init configuration", configuration, from_init=True))
    layers.append(Layer("Init metadata", dict(properties), from_init=True))
    return layers
