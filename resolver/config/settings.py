"""The settings of every role, as one documented dataclass, and the one function that loads them.

Sources, lowest precedence first: defaults, ``--config`` file, ``DAPR_NR_*`` environment,
``--set key=value``, then (for the component) Init's ``configuration`` JSON and Init's
metadata properties. Each source is a :class:`Layer`; :func:`load_settings` folds them, so a
later ``Init`` re-initializes an instance with its own settings layered over the start-up ones.
Unknown keys and bad values raise :class:`~resolver.errors.ConfigError` naming the key and the
source, which the component answers as ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from resolver.config import values
from resolver.config.values import AppPolicy, EtcdConnection, EtcdEndpoint, PolicyName, Template
from resolver.errors import ConfigError

ENV_PREFIX = "DAPR_NR_"


class Layer(NamedTuple):
    """One source of settings: a name for error messages and its camelCase key/value pairs."""

    source: str
    values: Mapping[str, object]


def _key(key: str, parse: Callable[[object], Any], doc: str) -> dict[str, Any]:
    return {"key": key, "parse": parse, "doc": doc}


@dataclass(frozen=True)
class Settings:
    """Every configuration key (DESIGN §2). Field metadata holds the key, its parser and its doc."""

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
    etcd_timeout: float = field(default=5.0, metadata=_key("etcdTimeout", values.parse_duration,
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
        "policy", values.parse_policy, "Locality, FailOver or ActiveActive"))
    cluster_weights: Mapping[str, int] = field(default_factory=dict, metadata=_key(
        "clusterWeights", values.parse_weights, "cluster=weight,…; unlisted clusters weigh 100; 0 excludes"))
    policies: Mapping[str, AppPolicy] = field(default_factory=dict, metadata=_key(
        "policies", values.parse_policies, 'per-app overrides, JSON {"ns/app": {"policy": …}}'))
    initial_sync_wait: float = field(default=3.0, metadata=_key(
        "initialSyncWait", values.parse_duration, "how long a resolve waits for the first registry sync"))
    failover_order: tuple[str, ...] = field(default=(), metadata=_key(
        "failoverOrder", values.parse_cluster_list, "clusters FailOver tries, in order, before the rest"))
    self_register: bool = field(default=False, metadata=_key(
        "selfRegister", values.parse_bool, "register the calling sidecar itself under clusterName"))
    stale_after: float = field(default=0.0, metadata=_key(
        "staleAfter", values.parse_duration, "drop remote endpoints after etcd is unreachable this long"))
    dns_ttl: float = field(default=5.0, metadata=_key(
        "dnsTTL", values.parse_duration, "TTL of DNS bridge answers"))

    @property
    def etcd(self) -> EtcdConnection:
        """The etcd connection these settings describe (hashable: readers are shared by it)."""
        return EtcdConnection(
            endpoints=self.etcd_endpoints, prefix=self.prefix, timeout=self.etcd_timeout,
            username=self.etcd_username, password=self.etcd_password, ca_cert=self.etcd_ca_cert,
            client_cert=self.etcd_client_cert, client_key=self.etcd_client_key,
        )

    def weight_of(self, cluster: str) -> int:
        return self.cluster_weights.get(cluster, DEFAULT_WEIGHT)

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
            elif isinstance(value, Template):
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


def load_settings(layers: Iterable[Layer]) -> Settings:
    """Fold ``layers`` (lowest precedence first) over the defaults and validate the result."""
    chosen: dict[str, tuple[object, str]] = {}
    for layer in layers:
        for key, raw in layer.values.items():
            spec = _FIELDS_BY_KEY.get(key)
            if spec is None:
                raise ConfigError(str(key), f"unknown key; known keys: {', '.join(KEYS)}", layer.source)
            try:
                parsed = spec.metadata["parse"](raw)
            except ValueError as error:
                raise ConfigError(key, str(error), layer.source) from None
            chosen[spec.name] = (parsed, layer.source)
    overrides: dict[str, Any] = {name: value for name, (value, _) in chosen.items()}
    settings = dataclasses.replace(DEFAULT_SETTINGS, **overrides)
    _validate_together(settings, {name: source for name, (_, source) in chosen.items()})
    return settings


def _validate_together(settings: Settings, sources: Mapping[str, str]) -> None:
    """Checks that span keys; the error names the key the user most likely has to fix."""
    if bool(settings.etcd_username) != bool(settings.etcd_password):
        missing = "etcdPassword" if settings.etcd_username else "etcdUsername"
        raise ConfigError(missing, "etcdUsername and etcdPassword must be set together",
                          sources.get("etcd_username") or sources.get("etcd_password", ""))
    if bool(settings.etcd_client_cert) != bool(settings.etcd_client_key):
        missing = "etcdClientKey" if settings.etcd_client_cert else "etcdClientCert"
        raise ConfigError(missing, "etcdClientCert and etcdClientKey must be set together")
    for name in ("etcd_ca_cert", "etcd_client_cert", "etcd_client_key"):
        path = getattr(settings, name)
        if path and not Path(path).is_file():
            key = Settings.__dataclass_fields__[name].metadata["key"]
            raise ConfigError(key, f"file {path!r} does not exist or is not a file", sources.get(name, ""))
    if settings.etcd_timeout <= 0:
        raise ConfigError("etcdTimeout", "must be greater than 0", sources.get("etcd_timeout", ""))
    if settings.self_register and not settings.cluster_name:
        raise ConfigError("clusterName", "selfRegister=true needs clusterName to register under",
                          sources.get("self_register", ""))


DEFAULT_SETTINGS = Settings()


# --- sources ---------------------------------------------------------------------------------


def file_layer(path: str | Path) -> Layer:
    """A YAML (or JSON) file of camelCase keys; a Dapr ``Configuration`` document also works."""
    source = f"config file {path}"
    try:
        document = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise ConfigError("--config", f"cannot read {path}: {error.strerror}", source) from None
    except yaml.YAMLError as error:
        raise ConfigError("--config", f"not valid YAML: {error}", source) from None
    if document is None:
        document = {}
    if isinstance(document, dict) and document.get("kind") == "Configuration":
        document = ((document.get("spec") or {}).get("nameResolution") or {}).get("configuration") or {}
    if not isinstance(document, dict):
        raise ConfigError("--config", f"expected a mapping of keys, got {type(document).__name__}", source)
    return Layer(source, document)


def env_layer(environ: Mapping[str, str] | None = None) -> Layer:
    """``DAPR_NR_<UPPER_SNAKE>`` variables; an unknown ``DAPR_NR_`` name is an error (typos)."""
    environ = os.environ if environ is None else environ
    found: dict[str, object] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = _KEYS_BY_ENV.get(name)
        if key is None:
            raise ConfigError(name, f"unknown environment variable; known: {', '.join(sorted(_KEYS_BY_ENV))}",
                              "environment")
        found[key] = value
    return Layer("environment", found)


def set_layer(assignments: Iterable[str]) -> Layer:
    """``--set key=value`` arguments."""
    found: dict[str, object] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(assignment, "expected key=value", "--set")
        found[key.strip()] = value
    return Layer("--set", found)


def init_layers(configuration_json: str, properties: Mapping[str, str]) -> list[Layer]:
    """Init's ``configuration`` JSON, then its metadata ``properties`` (which win)."""
    layers = []
    if configuration_json.strip():
        try:
            configuration = json.loads(configuration_json)
        except ValueError as error:
            raise ConfigError("configuration", f"not valid JSON: {error}", "Init") from None
        if configuration is None:
            configuration = {}
        if not isinstance(configuration, dict):
            raise ConfigError("configuration", f"expected a JSON object, got {type(configuration).__name__}",
                              "Init")
        layers.append(Layer("Init configuration", configuration))
    layers.append(Layer("Init metadata", dict(properties)))
    return layers
