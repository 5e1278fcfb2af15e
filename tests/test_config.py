"""Configuration is parsed and validated in one place; every error names its key and source."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.config import (
    DEFAULT_SETTINGS,
    Layer,
    PolicyName,
    env_layer,
    file_layer,
    init_layers,
    load_settings,
    set_layer,
)
from resolver.config.settings import KEYS, PROCESS_KEYS, env_name
from resolver.errors import ConfigError, ConfigValueError, FlagError
from resolver.etcd.connection import EtcdEndpoint
from resolver.observability import metrics


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
    ("5", 5.0), ("2.5", 2.5),
])
def test_durations(text: object, seconds: float) -> None:
    assert load(staleAfter=text).stale_after == seconds


@pytest.mark.parametrize("bad", ["5x", "ms", "-1s", "1.s", "", "15 s", True, None, [1], "٣s", "٣", "1h",
                                 float("nan"), float("inf"), "nan", "inf", "1e3"])
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


def test_unknown_key_is_a_warning_naming_the_closest_key(caplog: pytest.LogCaptureFixture) -> None:
    """Forward compatibility: a key of a newer release must not fail an older sidecar's Init."""
    before = metrics.CONFIG_UNKNOWN_KEYS.labels("test")._value.get()
    settings = load(clustername="x", initalSyncWait="1s", watchFanout="proxy", policy="Locality")
    assert settings.policy is PolicyName.LOCALITY and settings.cluster_name == ""
    text = caplog.text
    assert "unknown configuration key 'clustername'" in text and "did you mean 'clusterName'" in text
    assert "did you mean 'initialSyncWait'" in text and "'watchFanout'" in text
    assert metrics.CONFIG_UNKNOWN_KEYS.labels("test")._value.get() == before + 3


def test_a_bad_value_of_a_known_key_says_invalid_value() -> None:
    with pytest.raises(ConfigValueError) as raised:
        load(initialSyncWait="1h")
    message = str(raised.value)
    assert message.startswith("invalid value for 'initialSyncWait' (from test)")
    assert "accepted 0 to 1m" in message and "invalid configuration key" not in message


@pytest.mark.parametrize(("key", "value", "accepted"), [
    ("etcdTimeout", "0", "100ms to 1m"), ("etcdTimeout", "2m", "100ms to 1m"), ("initialSyncWait", 3600, "0 to 1m"),
    ("dnsTTL", "2h", "0 to 1h"), ("staleAfter", "169h", "0 to 168h"), ("maxInstances", "0", "1 to 10000"),
    ("maxStreams", 5000, "1 to 4096"),
])
def test_every_duration_and_size_key_has_a_range(key: str, value: object, accepted: str) -> None:
    with pytest.raises(ConfigValueError) as raised:
        load(**{key: value})
    assert accepted in str(raised.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused_in_every_key(value: float) -> None:
    for key in ("etcdTimeout", "initialSyncWait", "staleAfter", "dnsTTL", "maxInstances"):
        with pytest.raises(ConfigValueError, match=key):
            load(**{key: value})
    with pytest.raises(ConfigValueError, match="clusterWeights"):
        load(clusterWeights={"cluster-1": value})


def test_nan_in_init_json_and_yaml_is_refused(tmp_path: Path) -> None:
    for text in ('{"etcdTimeout": NaN}', '{"etcdTimeout": Infinity}', '{"policies": {"a/b": {"clusterWeights": '
                                                                      '{"c": -Infinity}}}}'):
        with pytest.raises(ConfigValueError, match="not a finite number"):
            init_layers(text, {})
    config = tmp_path / "nan.yaml"
    config.write_text("etcdTimeout: .nan\n")
    with pytest.raises(ConfigError, match="not a finite number"):
        load_settings([file_layer(config)])
    with pytest.raises(ConfigValueError, match="etcdTimeout"):
        load_settings([env_layer({"DAPR_NR_ETCD_TIMEOUT": "NaN"})])
    with pytest.raises(ConfigValueError, match="etcdTimeout"):
        load_settings([set_layer(["etcdTimeout=inf"])])


def test_a_key_written_twice_is_refused_in_every_structured_source_naming_the_key(tmp_path: Path) -> None:
    """Python's json and PyYAML keep the last of two equal keys; the one strict decoder refuses both."""
    twice = '{"default/orders": {"policy": "Locality", "policy": "FailOver"}}'
    for layer in (set_layer([f"policies={twice}"]), init_layers("", {"policies": twice})[-1]):
        with pytest.raises(ConfigValueError, match=r"'policies'.*duplicate key 'policy'"):
            load_settings([layer])
    with pytest.raises(ConfigValueError, match=r"'configuration' \(from Init\): duplicate key 'clusterName'"):
        init_layers('{"clusterName": "cluster-1", "clusterName": "cluster-2"}', {})
    with pytest.raises(ConfigValueError, match="duplicate key 'default/orders'"):
        init_layers('{"policies": {"default/orders": {}, "default/orders": {"policy": "Locality"}}}', {})
    config = tmp_path / "twice.yaml"
    config.write_text("clusterName: cluster-1\npolicy: Locality\nclusterName: cluster-2\n")
    with pytest.raises(FlagError, match=r"--config.*twice\.yaml: duplicate key 'clusterName' at line 3"):
        file_layer(config)
    as_json = tmp_path / "twice.json"
    as_json.write_text('{"policy": "Locality", "policy": "FailOver"}')
    with pytest.raises(FlagError, match="duplicate key 'policy' at line 1"):
        file_layer(as_json)
    merged = tmp_path / "merged.yaml"  # overriding what a YAML merge brings in is not writing a key twice
    merged.write_text("base: &base {clusterName: cluster-1, policy: Locality}\nnested:\n  <<: *base\n"
                      "  policy: FailOver\n")
    assert file_layer(merged).values["nested"] == {"clusterName": "cluster-1", "policy": "FailOver"}


def test_only_ascii_digits() -> None:
    with pytest.raises(ConfigValueError, match="ASCII digits"):
        load(clusterWeights="cluster-1=٣")
    with pytest.raises(ConfigValueError, match="ASCII digits"):
        load(clusterWeights="cluster-1=²")
    with pytest.raises(ConfigValueError, match="etcdEndpoints"):
        load(etcdEndpoints="etcd:٢٣٧٩")
    with pytest.raises(ConfigValueError, match="maxStreams"):
        load(maxStreams="١٠")
    assert load(clusterWeights="cluster-1=3").cluster_weights == {"cluster-1": 3}


def test_deep_nesting_and_huge_values_are_refused_before_parsing(tmp_path: Path) -> None:
    deep = "[" * 2000 + "]" * 2000
    with pytest.raises(ConfigValueError, match="nested deeper than 16"):
        init_layers('{"policies": ' + deep + "}", {})
    with pytest.raises(ConfigValueError, match="nested deeper than 16"):
        load(policies=deep)
    nested: object = 1
    for _ in range(2000):
        nested = {"a": nested}
    with pytest.raises(ConfigValueError, match="nested deeper"):
        load(policies=nested)
    config = tmp_path / "deep.yaml"
    config.write_text("policies: " + deep + "\n")
    with pytest.raises(FlagError, match=r"--config.*nested deeper"):
        file_layer(config)
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (1024 * 1024 + 10))
    with pytest.raises(FlagError, match="larger than 1024 KiB"):
        file_layer(big)
    huge = ",".join(f"cluster-{i}=x{i}" for i in range(2000))  # ~18 KB
    with pytest.raises(ConfigValueError) as raised:
        load(clusterWeights=huge)
    assert len(str(raised.value)) < 300


def test_process_limits_come_from_startup_only() -> None:
    assert set(PROCESS_KEYS) == {"maxInstances", "maxRegistries", "maxStreams", "maxSyncWaits", "probeBudget"}
    assert load_settings([set_layer(["maxInstances=5"])]).serve_limits.max_instances == 5
    for key in PROCESS_KEYS:
        with pytest.raises(ConfigValueError, match=rf"{key}.*process-level limit cannot be set through Init"):
            load_settings(init_layers("{}", {key: "1000"}))


def test_address_policy_keys() -> None:
    settings = load(clusterCIDRs="cluster-1=10.1.0.0/16,cluster-1=fd00:1::/48,cluster-2=hostnames",
                    allowLoopback="true")
    policy = settings.address_policy
    assert policy.allow_loopback
    assert policy.host_refusal("cluster-1", "10.1.2.3") is None
    assert policy.host_refusal("cluster-1", "10.2.0.1") is not None
    assert policy.host_refusal("cluster-1", "orders.example") is not None
    assert policy.host_refusal("cluster-2", "orders.example") is None
    assert DEFAULT_SETTINGS.address_policy.host_refusal("c", "127.0.0.1") is not None
    with pytest.raises(ConfigValueError, match="clusterCIDRs"):
        load(clusterCIDRs="cluster-1=10.1.0.0/33")
    with pytest.raises(ConfigValueError, match="allowLoopback"):
        load(allowLoopback="perhaps")
    assert "cacheScope" in KEYS and load(cacheScope="ondemand").cache_scope == "onDemand"


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
    assert env_layer({"DAPR_NR_CLUSTER": "typo"}).values == {}  # a warning naming DAPR_NR_CLUSTER_NAME
    with pytest.raises(FlagError, match=r"^invalid --set: 'novalue': expected KEY=VALUE"):
        set_layer(["novalue"])
    config = tmp_path / "list.yaml"
    config.write_text("kind: Configuration\nspec: [1]\n")
    assert file_layer(config).values == {}
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


def test_every_key_is_documented_with_its_default_and_range() -> None:
    """docs/configuration.md is what users rely on: every key, its default and its range."""
    import dataclasses

    from resolver.config import Settings
    from resolver.config.values import format_duration

    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("| `")]
    for spec in dataclasses.fields(Settings):
        key = spec.metadata["key"]
        row = next((line for line in rows if f"`{key}`" in line.split("|")[1]), None)
        assert row is not None, f"{key} is not in docs/configuration.md"
        accepted = getattr(spec.metadata["parse"], "range", None)
        if accepted is None:
            continue
        low, high = accepted
        default = getattr(DEFAULT_SETTINGS, spec.name)
        if isinstance(default, float):
            assert f"{format_duration(low)} to {format_duration(high)}" in row.replace("`", ""), (key, row)
            assert f"`{format_duration(default)}`" in row, (key, row)
        else:
            assert f"{low} to {high}" in row and f"`{default}`" in row, (key, row)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from([k for k in KEYS if not k.startswith("etcdC")]), value=_JSON,
       carrier=st.sampled_from(["layer", "init-json", "init-metadata", "set", "env"]))
def test_any_value_through_any_carrier_is_accepted_or_a_short_error_naming_the_key(key: str, value: object,
                                                                                   carrier: str) -> None:
    import json

    from resolver.config.settings import env_name

    text = value if isinstance(value, str) else json.dumps(value)
    try:
        if carrier == "layer":
            load(**{key: value})
        elif carrier == "init-json":
            load_settings(init_layers(json.dumps({key: value}), {}))
        elif carrier == "init-metadata":
            load_settings(init_layers("", {key: text}))
        elif carrier == "set":
            load_settings([set_layer([f"{key}={text}"])])
        else:
            load_settings([env_layer({env_name(key): text})])
    except ConfigValueError as error:
        assert error.field in (key, "configuration", "clusterName", "etcdPassword", "etcdUsername")
        assert len(str(error)) < 400
