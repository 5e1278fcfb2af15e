"""The alerts and the dashboard name only metrics the code exports.

The registry of metrics is the live one: every ``resolver`` module is imported (so every
module-level metric and collector registers) and ``prometheus_client.REGISTRY`` is read, with
each family expanded to the series names Prometheus sees (``_total`` for counters, ``_bucket``
``_sum`` ``_count`` for histograms). The PromQL is tokenized, not matched by a prefix, so a
misspelt or renamed metric of any name fails. Prometheus's own ``promtool`` then checks the rules
and unit-tests when the main alerts fire (and that they do not fire early, nor for a standby).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import resolver

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_OWN = {"up"}  # series Prometheus itself adds to every scrape target
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"), "gauge": ("",), "info": ("_info",),
            "stateset": ("",), "gaugehistogram": ("_bucket", "_gsum", "_gcount"), "unknown": ("",)}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan"}


def exported_series() -> set[str]:
    for module in pkgutil.walk_packages(resolver.__path__, "resolver."):
        if not module.name.endswith("__main__"):  # that one runs the CLI
            importlib.import_module(module.name)
    return {family.name + suffix for family in REGISTRY.collect() for suffix in SUFFIXES[family.type]}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, labels and literals removed)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)                     # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)                                # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)                               # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if not call and word.lower() not in KEYWORDS:
            names.add(word)
    return names


def test_the_tokenizer_finds_metrics_and_only_metrics() -> None:
    expr = ('sum by (namespace, pod) (rate(dapr_nr_x_total{rcode="SERVFAIL", a=~"b|c"}[5m])) '
            '/ on (pod) group_left max without (le) (histogram_quantile(0.99, foo_bucket)) > bool 1e3 offset 5m')
    assert metric_names(expr) == {"dapr_nr_x_total", "foo_bucket"}
    assert metric_names("up == 0") == {"up"}


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((ROOT / "deploy/monitoring/prometheusrule.yaml").read_text())
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def series() -> set[str]:
    found = exported_series()
    assert "dapr_nr_resolves_total" in found and "dapr_nr_registry_connected" in found  # the registry was read
    return found


def test_prometheus_rules_name_only_exported_metrics(series: set[str]) -> None:
    missing = {rule["alert"]: sorted(metric_names(rule["expr"]) - series - PROMETHEUS_OWN) for rule in rules()}
    assert not {alert: names for alert, names in missing.items() if names}, "metrics the code does not export"


def test_alerts_cover_the_failures_an_operator_must_hear_about() -> None:
    read = {name for rule in rules() for name in metric_names(rule["expr"])}
    for needed in ("dapr_nr_registry_connected", "dapr_nr_registry_reader_lag_seconds", "dapr_nr_publisher_synced",
                   "dapr_nr_cluster_gone", "dapr_nr_cluster_conflicts", "dapr_nr_publisher_lease_losses_total",
                   "dapr_nr_fallback_answers_total", "dapr_nr_dns_queries_total", "dapr_nr_cluster_reachable",
                   "dapr_nr_reachability_fail_open"):
        assert needed in read, f"no alert reads {needed}"
    for rule in rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert set(re.findall(r"\$labels\.(\w+)", json.dumps(rule["annotations"]))) <= (
            set(re.findall(r"\bby \(([^)]*)\)", rule["expr"])[0].replace(" ", "").split(","))
            if "by (" in rule["expr"] else {"namespace", "pod", "job", "instance"}), rule["alert"]


def test_grafana_dashboard_reads_only_exported_metrics(series: set[str]) -> None:
    dashboard = json.loads((ROOT / "deploy/monitoring/grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= 10
    missing = {expr: sorted(metric_names(expr) - series) for expr in exprs}
    assert not {e: m for e, m in missing.items() if m}
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


# -- the rules through Prometheus's own tool: syntax, templates, and when each alert fires --------

PROMTOOL = shutil.which("promtool")  # Debian's prometheus package (scripts/install-test-deps.sh)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool is needed: scripts/install-test-deps.sh installs Debian's prometheus package"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd)


def rules_file(directory: Path) -> Path:
    document = yaml.safe_load((ROOT / "deploy/monitoring/prometheusrule.yaml").read_text())
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(document["spec"]))
    return path


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    result = promtool("check", "rules", str(rules_file(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    broken = tmp_path / "broken.yaml"
    text = rules_file(tmp_path).read_text()
    broken.write_text(text.replace("max by (namespace, pod) (", "max by (namespace, pod (", 1))
    assert promtool("check", "rules", str(broken), cwd=tmp_path).returncode != 0  # the check can fail


def expected(alert: str, labels: dict[str, str]) -> dict[str, object]:
    """The alert's labels and its annotations rendered for ``labels`` (the rules use only $labels here)."""
    rule = next(r for r in rules() if r["alert"] == alert)
    render = {key: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
              for key, text in rule["annotations"].items()}
    return {"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": render}


POD = {"namespace": "dapr-nr-system", "pod": "dapr-etcd-dns-a"}
ALERT_CASES: list[dict[str, object]] = [
    {"interval": "1m", "input_series": [
        {"series": 'dapr_nr_registry_connected{namespace="dapr-nr-system",pod="dapr-etcd-dns-a",prefix="/p"}',
         "values": "1 1 0 0 0 0 0"},
        {"series": 'dapr_nr_registry_connected{namespace="dapr-nr-system",pod="dapr-etcd-dns-b",prefix="/p"}',
         "values": "1 1 1 1 1 1 1"}],
     "alert_rule_test": [
         {"eval_time": "3m", "alertname": "DaprNrRegistryUnreachable", "exp_alerts": []},  # not for 2m yet
         {"eval_time": "5m", "alertname": "DaprNrRegistryUnreachable",
          "exp_alerts": [expected("DaprNrRegistryUnreachable", POD)]}]},
    {"interval": "1m", "input_series": [  # leader synced, standby not: no alert; both 0 for 5m: alert
        {"series": 'dapr_nr_publisher_synced{namespace="dapr-nr-system",pod="pub-a"}', "values": "1x5 0x8"},
        {"series": 'dapr_nr_publisher_synced{namespace="dapr-nr-system",pod="pub-b"}', "values": "0x14"}],
     "alert_rule_test": [
         {"eval_time": "4m", "alertname": "DaprNrPublisherNotSynced", "exp_alerts": []},
         {"eval_time": "12m", "alertname": "DaprNrPublisherNotSynced",
          "exp_alerts": [expected("DaprNrPublisherNotSynced", {"namespace": "dapr-nr-system"})]}]},
    {"interval": "1m", "input_series": [  # every reader reports the cluster gone: one alert per cluster
        {"series": 'dapr_nr_cluster_gone{pod="r1",cluster="cluster-1",prefix="/p"}', "values": "1x5"},
        {"series": 'dapr_nr_cluster_gone{pod="r2",cluster="cluster-1",prefix="/p"}', "values": "1x5"},
        {"series": 'dapr_nr_cluster_conflicts{pod="r1",cluster="cluster-2",prefix="/p"}', "values": "0 1 1"}],
     "alert_rule_test": [
         {"eval_time": "3m", "alertname": "DaprNrClusterGone",
          "exp_alerts": [expected("DaprNrClusterGone", {"cluster": "cluster-1"})]},
         {"eval_time": "2m", "alertname": "DaprNrClusterNameConflict",
          "exp_alerts": [expected("DaprNrClusterNameConflict", {"cluster": "cluster-2"})]}]},
    {"interval": "1m", "input_series": [  # 2 % SERVFAIL for 15 minutes
        {"series": 'dapr_nr_dns_queries_total{namespace="dapr-nr-system",pod="d",rcode="NOERROR",transport="udp"}',
         "values": "0+98x20"},
        {"series": 'dapr_nr_dns_queries_total{namespace="dapr-nr-system",pod="d",rcode="SERVFAIL",transport="udp"}',
         "values": "0+2x20"}],
     "alert_rule_test": [
         {"eval_time": "20m", "alertname": "DaprNrDnsErrors",
          "exp_alerts": [expected("DaprNrDnsErrors", {"namespace": "dapr-nr-system"})]}]},
    {"interval": "1m", "input_series": [  # unreachable for 1m (a blip) then for good; fail open from 3m
        {"series": 'dapr_nr_cluster_reachable{namespace="dapr-nr-system",pod="d",cluster="cluster-2"}',
         "values": "1 0 1 0 0 0 0 0"},
        {"series": 'dapr_nr_cluster_reachable{namespace="dapr-nr-system",pod="e",cluster="cluster-2"}',
         "values": "1x7"},
        {"series": 'dapr_nr_reachability_fail_open{namespace="dapr-nr-system",pod="d"}',
         "values": "0 0 0 1 1 1 1 1"}],
     "alert_rule_test": [
         {"eval_time": "2m", "alertname": "DaprNrClusterUnreachable", "exp_alerts": []},
         {"eval_time": "6m", "alertname": "DaprNrClusterUnreachable", "exp_alerts": [expected(
             "DaprNrClusterUnreachable", {"namespace": "dapr-nr-system", "pod": "d", "cluster": "cluster-2"})]},
         {"eval_time": "4m", "alertname": "DaprNrReachabilityFailOpen", "exp_alerts": []},
         {"eval_time": "6m", "alertname": "DaprNrReachabilityFailOpen",
          "exp_alerts": [expected("DaprNrReachabilityFailOpen", {"namespace": "dapr-nr-system", "pod": "d"})]}]},
    {"interval": "1m", "input_series": [
        {"series": 'dapr_nr_publisher_lease_losses_total{namespace="dapr-nr-system",pod="pub-a"}',
         "values": "0 0 0 1 1"}],
     "alert_rule_test": [
         {"eval_time": "2m", "alertname": "DaprNrLeaseLosses", "exp_alerts": []},
         {"eval_time": "4m", "alertname": "DaprNrLeaseLosses",
          "exp_alerts": [expected("DaprNrLeaseLosses", {"namespace": "dapr-nr-system", "pod": "pub-a"})]}]},
    {"interval": "1m", "input_series": [  # 2 fallback answers/s from components, 0.5/s from a bridge
        {"series": 'dapr_nr_resolves_total{namespace="shop",pod="app-1",outcome="fallback",policy="FailOver"}',
         "values": "0+120x30"},
        {"series": 'dapr_nr_fallback_answers_total{namespace="dapr-nr-system",pod="d",role="dns"}',
         "values": "0+30x30"}],
     "alert_rule_test": [
         {"eval_time": "25m", "alertname": "DaprNrFallbackAnswers",
          "exp_alerts": [expected("DaprNrFallbackAnswers", {"namespace": "shop", "role": "component"})]}]},
]


def test_alerts_fire_when_they_should_and_not_before(tmp_path: Path) -> None:
    rules_file(tmp_path)
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
                                                         "tests": ALERT_CASES}))
    result = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
