"""Configuration is parsed and validated in one place; every error names its key and source."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolver.config import (
    DEFAULT_SETTINGS,
    EtcdEndpoint,
    Layer,
    PolicyName,
    env_layer,
    file_layer,
    init_layers,
    load_settings,
    set_layer,
)
from resolver.config.settings import KEYS, env_name
from resolver.errors import ConfigError


def load(**keys: object):
    return load_settings([Layer("test", keys)])


def test_defaults_match_the_design() -> None:
    s = DEFAULT_SETTINGS
    assert s.etcd_endpoints == (EtcdEndpoint("127.0.0.1", 2379),)
    assert (s.etcd_timeout, s.prefix, s.cluster_domain, s.fallback) == (5.0, "/dapr/nr/v1", "cluster.local", "dns")
    assert s.policy is PolicyName.FAILOVER and s.initial_sync_wait == 3.0 and s.stale_after == 0.0
    assert s.template.format(id="a", namespace="ns", clusterDomain="cluster.local", port=50002) == \
        "a-dapr.ns.svc.cluster.local:50002"


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("15s", 15.0), ("2m", 120.0), ("1m30s", 90.0), ("0", 0.0), (3, 3.0), (1.5, 1.5), ("1h", 3600.0),
])
def test_durations(text: object, seconds: float) -> None:
    assert load(staleAfter=text).stale_after == seconds


@pytest.mark.parametrize("bad", ["5x", "ms", "-1s", "1.s", "", "15 s", True, None, [1]])
def test_bad_duration_names_the_key(bad: object) -> None:
    with pytest.raises(ConfigError) as raised:
        load(initialSyncWait=bad)
    assert raised.value.field == "initialSyncWait"
    assert "initialSyncWait" in str(raised.value) and "(from test)" in str(raised.value)


def test_endpoints_accept_plain_tls_and_ipv6() -> None:
    settings = load(etcdEndpoints="10.0.0.1:2379, https://etcd.example:2379,[::1]:2381")
    assert settings.etcd_endpoints == (
        EtcdEndpoint("10.0.0.1", 2379), EtcdEndpoint("etcd.example", 2379, secure=True), EtcdEndpoint("::1", 2381))
    assert load(etcdEndpoints=["a:1", "b:2"]).etcd_endpoints[1] == EtcdEndpoint("b", 2)


@pytest.mark.parametrize("bad", ["", "host", "host:port", "h:99999", "bad host:1", 5])
def test_bad_endpoints(bad: object) -> None:
    with pytest.raises(ConfigError, match="etcdEndpoints"):
        load(etcdEndpoints=bad)


def test_unknown_key_is_refused_and_known_keys_listed() -> None:
    with pytest.raises(ConfigError) as raised:
        load(clustername="x")
    assert raised.value.field == "clustername"
    assert "clusterName" in str(raised.value)


def test_weights_and_policies() -> None:
    settings = load(clusterWeights="cluster-1=100, cluster-3=0", policy="activeactive",
                    failoverOrder="cluster-2,cluster-3",
                    policies='{"shop/payments": {"policy": "Locality", "clusterWeights": {"cluster-2": 5}}}')
    assert settings.cluster_weights == {"cluster-1": 100, "cluster-3": 0}
    assert settings.policy is PolicyName.ACTIVE_ACTIVE
    assert settings.failover_order == ("cluster-2", "cluster-3")
    override = settings.policies["shop/payments"]
    assert override.policy is PolicyName.LOCALITY and override.cluster_weights == {"cluster-2": 5}
    assert override.failover_order is None
    assert load(policies={"a/b": {"policy": "FailOver"}}).policies["a/b"].policy is PolicyName.FAILOVER


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("clusterWeights", "cluster-1=-1", "weight of 'cluster-1'"),
    ("clusterWeights", "cluster-1", "is not cluster=weight"),
    ("clusterWeights", "Cluster_1=5", "DNS-1123"),
    ("clusterWeights", {"c": True}, "weight of 'c'"),
    ("policy", "RoundRobin", "unknown policy 'RoundRobin'"),
    ("policies", "{not json", "not valid JSON"),
    ("policies", '{"payments": {}}', "is not \"namespace/app\""),
    ("policies", '{"shop/payments": {"policy": "Nope"}}', "['shop/payments'].policy"),
    ("policies", '{"shop/payments": {"weights": {}}}', "unknown key 'weights'"),
    ("policies", "[1, 2]", "expected a JSON object"),
    ("fallback", "maybe", "expected dns or none"),
    ("template", "{id}.{ns}:{port}", "unknown placeholder {ns}"),
    ("template", "{id}.svc", "must contain {port}"),
    ("template", "{id}.{:{port}", "unbalanced"),
    ("prefix", "dapr/nr", "must start with '/'"),
    ("clusterName", "Cluster 1", "DNS-1123"),
    ("selfRegister", "perhaps", "expected true or false"),
    ("failoverOrder", "a,B", "DNS-1123"),
])
def test_bad_values_name_the_key(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(**{key: value})
    assert raised.value.field == key
    assert fragment in str(raised.value)


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigError, match="etcdPassword"):
        load(etcdUsername="root")
    with pytest.raises(ConfigError, match="etcdClientKey"):
        load(etcdClientCert=__file__)
    with pytest.raises(ConfigError, match=r"etcdCACert.*does not exist"):
        load(etcdCACert="/nonexistent/ca.pem")
    with pytest.raises(ConfigError, match="clusterName"):
        load(selfRegister="true")


def test_precedence_file_env_set_init(tmp_path: Path) -> None:
    config = tmp_path / "nr.yaml"
    config.write_text("clusterName: from-file\npolicy: Locality\nprefix: /file\netcdTimeout: 7s\n")
    layers = [
        file_layer(config),
        env_layer({"DAPR_NR_CLUSTER_NAME": "from-env", "DAPR_NR_PREFIX": "/env", "PATH": "/bin"}),
        set_layer(["clusterName=from-set"]),
        *init_layers('{"clusterName": "from-init-config", "clusterDomain": "example.org"}',
                     {"clusterName": "from-init-metadata"}),
    ]
    settings = load_settings(layers)
    assert settings.cluster_name == "from-init-metadata"
    assert settings.prefix == "/env"
    assert settings.policy is PolicyName.LOCALITY and settings.etcd_timeout == 7.0
    assert settings.cluster_domain == "example.org"


def test_dapr_configuration_document_is_accepted(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  nameResolution:\n"
                      "    component: etcd\n    configuration:\n      clusterName: cluster-9\n")
    assert load_settings([file_layer(config)]).cluster_name == "cluster-9"


def test_bad_sources(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        file_layer(bad_yaml)
    with pytest.raises(ConfigError, match="cannot read"):
        file_layer(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="DAPR_NR_CLUSTER"):
        env_layer({"DAPR_NR_CLUSTER": "typo"})
    with pytest.raises(ConfigError, match="expected key=value"):
        set_layer(["novalue"])
    with pytest.raises(ConfigError, match=r"configuration.*not valid JSON"):
        init_layers("{", {})
    with pytest.raises(ConfigError, match="expected a JSON object"):
        init_layers("[]", {})


def test_env_names_are_upper_snake() -> None:
    assert env_name("etcdCACert") == "DAPR_NR_ETCD_CA_CERT"
    assert env_name("dnsTTL") == "DAPR_NR_DNS_TTL"
    assert env_name("initialSyncWait") == "DAPR_NR_INITIAL_SYNC_WAIT"
    assert len({env_name(key) for key in KEYS}) == len(KEYS)


def test_secrets_never_in_repr_or_explain() -> None:
    settings = load(etcdUsername="root", etcdPassword="hunter2")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in settings.explain()
    assert "hunter2" not in repr(settings.etcd)
    with pytest.raises(ConfigError) as raised:
        load(etcdPassword=12345)
    assert "12345" not in str(raised.value)
