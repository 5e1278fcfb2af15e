"""The Kubernetes side's failures that need no API server: none answering, a kubeconfig that is not YAML.

Real kubernetes client, real etcd, and no API server at all — not even the fake. The failures a
server has (a silent or dropped watch, 410, refused permissions) are played by a real
kube-apiserver in test_real_apiserver_pods.py and test_real_apiserver_sources.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from resolver.demo.processes import CliProcess
from resolver.local_etcd import free_port
from resolver.publisher.agent import PublisherAgent
from tests.conftest import eventually

pytestmark = pytest.mark.registry  # also run against etcd 3.4 in CI (README's test command)

Start = Callable[..., PublisherAgent]


def test_an_unreachable_api_server_logs_once_then_throttles(
        publisher: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kubeconfig = tmp_path / "closed-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "closed",
        "clusters": [{"name": "closed", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "closed", "user": {"token": "unused"}}],
        "contexts": [{"name": "closed", "context": {"cluster": "closed", "user": "closed"}}]}))
    caplog.set_level(logging.DEBUG, logger="urllib3")
    caplog.set_level(logging.DEBUG, logger="resolver.publisher.kube_source")
    agent = publisher(kubeconfig=str(kubeconfig), wait=False)
    eventually(lambda: any("list pods" in r.getMessage() and "(attempt 4)" in r.getMessage() for r in caplog.records),
               30, "four failed pod lists")
    assert not any("Retrying" in r.getMessage() for r in caplog.records), "urllib3 retries are on"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([w for w in warnings if "list pods" in w]) == 1, warnings
    assert len(warnings) <= 4, warnings  # pods, nodes, the kube-system UID: once each
    assert not agent.synced.is_set() and agent.cluster_uid == ""  # no guard without the API server


def test_a_kubeconfig_that_is_not_yaml_is_one_line_naming_it(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{not: [valid yaml\n\tat all")
    process = CliProcess(["publish", "--cluster", "c1", "--kubeconfig", str(kubeconfig), "--set",
                          f"etcdEndpoints=127.0.0.1:{free_port()}"], tmp_path / "publish.log")
    assert process.process.wait(30) == 2
    output = process.output()
    assert "Traceback" not in output and "ParserError" not in output
    lines = [line for line in output.splitlines() if str(kubeconfig) in line]
    assert len(lines) == 1 and "--kubeconfig" in lines[0] and "YAML" in lines[0], output


def test_api_client_maps_a_non_yaml_kubeconfig_to_one_config_error(tmp_path: Path) -> None:
    from resolver.errors import ConfigError
    from resolver.publisher.kube_client import api_client

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{not: [valid yaml\n\tat all")
    with pytest.raises(ConfigError) as raised:
        api_client(str(kubeconfig))
    assert str(kubeconfig) in str(raised.value) and "\n" not in str(raised.value)
