"""Inventory safety: parsing rules, and the file source on real etcd."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.errors import InventoryError, NoEndpoints
from resolver.etcd.gateway import EtcdGateway
from resolver.publisher.file_source import FileSource, read_inventory
from resolver.publisher.inventory import entries_of, load_document, parse_entries
from resolver.publisher.publication import Publication
from resolver.records.addresses import AddressPolicy
from resolver.records.schema import ClusterInfo, Keys
from tests.conftest import eventually
from tests.support.publishing import etcd_addresses

GOOD = "{appId: billing, namespace: default, instance: vm-%d, address: 10.1.0.%d, port: 50002}"


def _problems(text: str, policy: AddressPolicy | None = None) -> list[str]:
    inventory = parse_entries(entries_of(load_document(text, "inv.yaml"), "inv.yaml"), "vms", "inv.yaml",
                              policy or AddressPolicy())
    return inventory.problems


@pytest.mark.parametrize("text", ["", "# only a comment\n", "~", "{}", "endpoints:", "endpoints: ~\n",
                                  "other: 1"])
def test_empty_looking_documents_are_not_an_instruction_to_empty_the_cluster(text: str) -> None:
    with pytest.raises(NoEndpoints):
        entries_of(load_document(text, "inv.yaml"), "inv.yaml")


@pytest.mark.parametrize("text", ["[]", "endpoints: []"])
def test_only_an_explicit_empty_list_empties(text: str) -> None:
    assert entries_of(load_document(text, "inv.yaml"), "inv.yaml") == []


@pytest.mark.parametrize(("entry", "expected"), [
    ("{appId: 12345, namespace: default, instance: vm-1, address: 10.1.0.1}", "entry 1: appId: expected a string, "
     "got int"),
    ("{appId: a, namespace: default, instance: vm-1, address: 10.1.0.1, zone: [a, b]}", "entry 1: zone: expected a "
     "string, got list"),
    ("{appId: a, namespace: default, instance: vm-1, address: 10.1.0.1, zone: " + "z" * 64 + "}", "entry 1: zone:"),
    ("{appId: a, namespace: default, instance: vm-1, address: 10.1.0.1, zone: 'eu 1'}", "entry 1: zone:"),
    ("{appId: a, namespace: default, instance: vm-1, address: 10.1.0.1, node: Node_1}", "entry 1: node:"),
    ("{appId: a, namespace: default, instance: vm-1, address: 999.1.0.1}", "entry 1: address:"),
    ("{appId: a, namespace: default, instance: vm-1, address: 10.1.0.256}", "entry 1: address:"),
    ("{appId: a, namespace: default, instance: vm-1, address: 0x7f000001}", "entry 1: address:"),
    ("{appId: a, namespace: default, instance: vm-1, address: 'bad_host!'}", "entry 1: address:"),
    ("{appId: a, namespace: default, instance: vm-1, address: 127.0.0.1}", "entry 1 (vm-1): address not published"),
    ("{appId: a, namespace: default, instance: vm-1, address: 169.254.169.254}", "address not published"),
    ("{appId: a, namespace: default, instance: vm-1, address: 10.1.0.1, port: '80'}", "entry 1: port:"),
    ("{appId: a, namespace: default, instance: vm-1}", "entry 1: address: missing"),
])
def test_each_bad_field_is_named_with_its_entry_number(entry: str, expected: str) -> None:
    problems = _problems(f"- {GOOD % (1, 1)}\n- {entry}\n".replace("vm-1, address: 10.1.0.1, port: 50002}", "vm-0, "
                                                                     "address: 10.1.0.9, port: 50002}", 1))
    assert len(problems) == 1
    assert expected.replace("entry 1", "entry 2") in problems[0], problems[0]


def test_eks_node_names_and_label_value_zones_are_accepted() -> None:
    text = ("- {appId: a, namespace: default, instance: vm-1, address: 10.1.0.1, zone: eu-west-1a, "
            "node: ip-10-1-0-1.eu-west-1.compute.internal}\n"
            "- {appId: a, namespace: default, instance: vm-2, address: vm2.example.com}\n"
            "- {appId: a, namespace: default, instance: vm-3, address: 'fd00::3'}\n")
    assert _problems(text) == []


def test_yaml_aliases_are_refused() -> None:
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n' \
           "endpoints:\n- {appId: a, namespace: default, instance: vm-1, address: 10.1.0.1, zone: *b}\n"
    with pytest.raises(InventoryError, match="aliases are not allowed"):
        load_document(bomb, "inv.yaml")
    assert _problems("- {appId: a, namespace: default, instance: vm-1, address: 10.1.0.1, zone: 'a&b*c'}\n")


def test_a_key_written_twice_is_refused_naming_the_key_and_its_line() -> None:
    """PyYAML and Python's json keep the last of two equal keys: the metadata address would be published."""
    twice = (f"- {GOOD % (1, 1)}\n"
             "- appId: billing\n  namespace: default\n  instance: vm-2\n  address: 10.1.0.2\n"
             "  address: 169.254.169.254\n")
    with pytest.raises(InventoryError, match=r"^inv\.yaml: duplicate key 'address' at line 6$"):
        load_document(twice, "inv.yaml")
    with pytest.raises(InventoryError, match=r"^inv\.yaml: duplicate key 'endpoints' at line 2$"):
        load_document(f"endpoints: []\nendpoints:\n- {GOOD % (1, 1)}\n", "inv.yaml")
    as_json = ('{"endpoints": [{"appId": "billing", "namespace": "default", "instance": "vm-1", '
               '"address": "10.1.0.1", "address": "169.254.169.254"}]}')
    with pytest.raises(InventoryError, match=r"^inv\.json: duplicate key 'address'$"):
        load_document(as_json, "inv.json", as_json=True)
    assert load_document(as_json.replace(', "address": "169.254.169.254"', ""), "inv.json", as_json=True)


@pytest.mark.parametrize(("text", "fragment"), [
    ('[{"appId": "a", "port": NaN}]', "NaN is not a finite number"),
    ('[{"appId": "a", "port": 1e999}]', "number 1e999 is not a finite number"),
    ("[" * 100_000, "nested deeper than the JSON parser can follow"),
    ("[{", "not valid JSON"),
], ids=["NaN", "overflow", "deep", "broken"])
def test_json_inventories_are_decoded_strictly(text: str, fragment: str) -> None:
    with pytest.raises(InventoryError, match=rf"^inv\.json: {fragment}"):
        load_document(text, "inv.json", as_json=True)


def test_cluster_cidrs_refuse_addresses_outside_the_clusters_range() -> None:
    policy = AddressPolicy.from_spec("vms=10.1.0.0/16")
    problems = _problems(f"- {GOOD % (1, 1)}\n- {{appId: a, namespace: default, instance: vm-9, address: 10.2.0.1}}\n"
                         "- {appId: a, namespace: default, instance: vm-8, address: vm8.example.com}\n", policy)
    assert len(problems) == 2 and "outside clusterCIDRs" in problems[0] and "host name" in problems[1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({"appId": st.text(max_size=8), "address": st.text(max_size=20)},
                                      optional={"zone": st.text(max_size=70), "node": st.text(max_size=20)}),
                max_size=5))
def test_every_accepted_entry_is_valid_and_every_refused_one_is_named(entries: list[dict[str, str]]) -> None:
    documents = [{"namespace": "default", "instance": f"vm-{n}", **entry} for n, entry in enumerate(entries)]
    inventory = parse_entries(documents, "vms", "inv.json", AddressPolicy())
    assert len(inventory.records) + len(inventory.problems) == len(documents)
    for problem in inventory.problems:
        assert problem.startswith("inv.json entry ")
    for record in inventory.records:
        assert len(record.zone) <= 63 and record.address


def test_read_inventory_refuses_fifos_devices_and_oversize_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(InventoryError, match="a FIFO"):
        read_inventory(fifo)
    assert time.monotonic() - started < 10  # never blocks waiting for a writer (that would be for ever)
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    with pytest.raises(InventoryError, match="character device"):
        read_inventory(zero)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * 2000)
    with pytest.raises(InventoryError, match="over the 1000-byte limit"):
        read_inventory(big, limit=1000)
    real = tmp_path / "real.yaml"
    real.write_text("[]")
    link = tmp_path / "link.yaml"
    link.symlink_to(real)  # ConfigMap mounts are symlinks: followed
    assert read_inventory(link) == b"[]"
    with pytest.raises(InventoryError, match="no such file"):
        read_inventory(tmp_path / "absent.yaml")


@pytest.fixture
def source(gateway: EtcdGateway, tmp_path: Path) -> Iterator[tuple[FileSource, Path]]:
    info = ClusterInfo(cluster="vms", publisher="test", version="0", started_at=time.time())
    publication = Publication(gateway, "vms", 5.0, info)
    publication.lead()
    path = tmp_path / "inventory.yaml"
    inventory = FileSource(path, "vms", publication, poll=0.05, settle=0.3, use_inotify=False)
    yield inventory, path
    inventory.stop()
    publication.step_down()


def _write(path: Path, count: int) -> None:
    path.write_text("endpoints:\n" + "".join(f"- {GOOD % (n, n % 250 + 1)}\n" for n in range(count)))


def test_truncate_then_write_never_publishes_a_partial_or_empty_state(
        source: tuple[FileSource, Path], gateway: EtcdGateway, keys: Keys) -> None:
    inventory, path = source
    _write(path, 200)
    inventory.start()
    eventually(lambda: len(etcd_addresses(gateway, keys, "vms")) == 200, 10, "the first load")
    seen: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            seen.append(len(etcd_addresses(gateway, keys, "vms")))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for _ in range(3):  # what editors and copy tools do: truncate, pause, write in pieces
        with open(path, "w") as handle:
            handle.flush()
            time.sleep(0.1)
            text = "endpoints:\n" + "".join(f"- {GOOD % (n, n % 250 + 1)}\n" for n in range(200))
            for piece in range(0, len(text), len(text) // 4):
                handle.write(text[piece : piece + len(text) // 4])
                handle.flush()
                time.sleep(0.05)
    time.sleep(1)
    stop.set()
    sampler.join()
    assert min(seen) == 200, f"published a partial state: min {min(seen)}"


def test_empty_files_keep_the_last_state_and_only_an_explicit_list_empties(
        source: tuple[FileSource, Path], gateway: EtcdGateway, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    inventory, path = source
    _write(path, 3)
    inventory.start()
    eventually(lambda: len(etcd_addresses(gateway, keys, "vms")) == 3, 10, "the first load")
    with caplog.at_level(logging.WARNING):
        for text in ("", "# nothing\n", "~", "{}", "endpoints:\n", "{not: [valid"):
            loads = inventory.loads
            path.write_text(text)
            eventually(lambda: any("keeping the last good state (3 endpoints)" in r.getMessage()
                                   for r in caplog.records), 5, f"a warning for {text!r}")
            caplog.clear()
            assert inventory.loads == loads
            assert len(etcd_addresses(gateway, keys, "vms")) == 3
    path.write_text("endpoints: []\n")
    eventually(lambda: etcd_addresses(gateway, keys, "vms") == {}, 5, "the explicit empty list")


def test_json_inventory(source: tuple[FileSource, Path], gateway: EtcdGateway, keys: Keys, tmp_path: Path) -> None:
    inventory, _ = source
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"endpoints": [{"appId": "billing", "namespace": "default", "instance": "vm-1",
                                               "address": "10.1.0.1", "zone": "z1"}]}))
    json_source = FileSource(path, "vms", inventory.publication, poll=0.05, settle=0.1, use_inotify=True)
    json_source.start()
    try:
        eventually(lambda: etcd_addresses(gateway, keys, "vms") == {"vm-1": "10.1.0.1:50002"}, 10, "JSON load")
        assert json_source.watcher is not None  # inotify on Linux
        path.write_text(json.dumps([{"appId": "billing", "namespace": "default", "instance": "vm-2",
                                     "address": "10.1.0.2"}]))
        eventually(lambda: etcd_addresses(gateway, keys, "vms") == {"vm-2": "10.1.0.2:50002"}, 3, "JSON reload")
    finally:
        json_source.stop()


def test_a_missing_inventory_is_said_and_nothing_is_synced(
        source: tuple[FileSource, Path], gateway: EtcdGateway, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    inventory, path = source
    with caplog.at_level(logging.WARNING):
        inventory.start()
        eventually(lambda: any("no such file" in r.getMessage() and "nothing is published" in r.getMessage()
                               for r in caplog.records), 5, "a warning")
    assert gateway.get(keys.info("vms")) is None or b'"syncedAt":null' in (gateway.get(keys.info("vms")) or b"")
    _write(path, 2)
    eventually(lambda: len(etcd_addresses(gateway, keys, "vms")) == 2, 5, "load once it appears")


def test_a_reload_reuses_unchanged_entries_but_never_a_look_alike() -> None:
    from resolver.publisher.inventory import EntryValidator

    first = EntryValidator("vms")
    entry = {"appId": "a", "namespace": "default", "instance": "vm-1", "address": "10.1.0.1", "port": 1}
    parse_entries([entry], "vms", "inv", validator=first)
    again = EntryValidator("vms", first.seen)
    look_alike = {**entry, "port": True}  # True == 1 in Python; only the int is a port
    result = parse_entries([entry, {**look_alike, "instance": "vm-1"}], "vms", "inv", validator=again)
    assert len(result.records) == 1 and "entry 2: port:" in result.problems[0]
