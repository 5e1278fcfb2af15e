"""Zones before clusters with the real daprd: Dapr's consul resolver asking the consul role, which
places each caller in its zone by the request's source address (tests/support/zone_scenarios.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import slots, zone_scenarios
from tests.support.clusters import Topology

pytestmark = [pytest.mark.xdist_group("real-daprd-2"), pytest.mark.timeout(600 + slots.WAIT)]

SETTINGS = {"policies": json.dumps({"default/zoned": {"policy": "ActiveActive"}}),
            "clusterCIDRs": "cluster-1=10.201.0.0/16,cluster-2=10.202.0.0/16"}


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    with Topology(tmp_path_factory.mktemp("zones"), SETTINGS, resolver="consul").start() as made:
        yield made


def test_callers_stay_in_their_zone_and_overflow_when_it_empties(topology: Topology, tmp_path: Path) -> None:
    result = zone_scenarios.zone_shares(topology, tmp_path, SETTINGS)
    print("zones:", result)
    # Without the tier, ActiveActive spreads over all 8 instances: 2 of them in zone-a.
    assert 0.1 < result.without_tier < 0.45, result
    assert result.with_tier == 1.0, result  # every settled call stays in zone-a
    assert result.emptied == 0.0 and set(result.emptied_clusters) == {"cluster-1", "cluster-2"}, result
    assert sum(result.failed) == 0, result
