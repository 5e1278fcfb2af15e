"""The Kubernetes side's own failures: a silent watch, an unreachable API
server, a kubeconfig that is not YAML — real kubernetes client, the fake API server, real etcd."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from resolver.demo.processes import CliProcess
from resolver.etcd.gateway import EtcdGateway
from resolver.local_etcd import free_port
from resolver.publisher import kube_source
from resolver.publisher.agent import PublisherAgent
from resolver.records.schema import Keys
from tests.conftest import eventually
from tests.support.fake_kube import FakeKubeApi, make_pod
from tests.support.publishing import etcd_addresses

pytestmark = pytest.mark.registry  # also run against etcd 3.4 in CI (README's test command)

Start = Callable[..., PublisherAgent]


def test_a_silent_watch_is_noticed_and_resumed_from_the_last_version(
        kube: FakeKubeApi, publisher: Start, gateway: EtcdGateway, keys: Keys,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Half-open TCP: the stream stays open but nothing (not even a bookmark) arrives."""
    monkeypatch.setattr(kube_source, "WATCH_SILENCE_SECONDS", 1.5)  # production: 90 s (bookmarks ~60 s)
    caplog.set_level(logging.INFO, logger="resolver.publisher.kube_source")
    kube.put_pod(make_pod("orders-0"))
    agent = publisher()
    assert isinstance(agent.source, kube_source.KubernetesSource)
    reflector = agent.source.pods[0]
    assert reflector.silence == 1.5
    kube.paused = True  # the open stream goes silent without closing
    went_silent = time.monotonic()
    eventually(lambda: reflector.resumes >= 1, 20, "the silent watch to be noticed")
    # by the 1.5 s silence bound, not production's 90 s: generous for a loaded machine
    assert time.monotonic() - went_silent <= 1.5 + 8.5
    kube.put_pod(make_pod("orders-1", ip="10.0.0.2"))
    kube.paused = False
    eventually(lambda: "orders-1" in etcd_addresses(gateway, keys, "cluster-1"), 10, "the event after resuming")
    assert reflector.relists == 1  # resumed from the last resourceVersion, not re-listed
    eventually(lambda: any("answers pod requests again" in r.getMessage() and "resumed the watch" in r.getMessage()
                           for r in caplog.records), 5, "one recovery line")


def test_an_unreachable_api_server_logs_once_then_throttles(
        publisher: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kubeconfig = FakeKubeApi.kubeconfig.__get__(type("Closed", (), {"url": f"http://127.0.0.1:{free_port()}"})())(
        tmp_path / "closed-kubeconfig")
    with caplog.at_level(logging.DEBUG, logger="urllib3"), caplog.at_level(logging.WARNING):
        agent = publisher(kubeconfig=str(kubeconfig), wait=False)
        eventually(lambda: any("list pods" in r.getMessage() for r in caplog.records), 10, "a failed list")
        time.sleep(3)
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
