"""The committed stubs match proto/, and the proto matches the wire contract of docs/architecture.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from resolver._proto import common_pb2, nameresolution_pb2

ROOT = Path(__file__).resolve().parents[2]


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    committed = ROOT / "resolver" / "_proto"
    fresh = sorted(p.name for p in tmp_path.iterdir())
    assert fresh == sorted(p.name for p in committed.iterdir() if p.is_file() and p.suffix in (".py", ".pyi"))
    for name in fresh:
        assert (tmp_path / name).read_text() == (committed / name).read_text(), (
            f"resolver/_proto/{name} drifted from proto/: run  python scripts/gen_proto.py")


def fields(message: Any) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


def test_wire_contract() -> None:
    service = nameresolution_pb2.DESCRIPTOR.services_by_name["NameResolution"]
    assert service.full_name == "dapr.proto.components.v1.NameResolution"
    assert {m.name: (m.input_type.name, m.output_type.name) for m in service.methods} == {
        "Init": ("NameResolutionInitRequest", "NameResolutionInitResponse"),
        "Features": ("FeaturesRequest", "FeaturesResponse"),
        "Ping": ("PingRequest", "PingResponse"),
        "ResolveID": ("ResolveRequest", "ResolveResponse"),
        "ResolveIDMulti": ("ResolveRequest", "ResolveMultiResponse"),
        "Close": ("CloseRequest", "CloseResponse"),
    }
    assert fields(nameresolution_pb2.NameResolutionInitRequest) == {"metadata": 1, "instance": 2, "configuration": 3}
    assert fields(nameresolution_pb2.Instance) == {"app_id": 1, "namespace": 2, "address": 3, "dapr_http_port": 4,
                                                   "dapr_internal_port": 5, "app_port": 6}
    assert fields(nameresolution_pb2.ResolveRequest) == {"id": 1, "namespace": 2, "port": 3, "data": 4}
    assert fields(nameresolution_pb2.ResolveResponse) == {"address": 1}
    assert fields(nameresolution_pb2.ResolveMultiResponse) == {"addresses": 1}
    assert fields(common_pb2.MetadataRequest) == {"properties": 1}
    assert fields(common_pb2.FeaturesResponse) == {"features": 1}
    assert common_pb2.DESCRIPTOR.package == "dapr.proto.components.v1"


def test_stubs_do_not_claim_the_dapr_import_name() -> None:
    assert not (ROOT / "dapr").exists()
    source = (ROOT / "resolver" / "_proto" / "nameresolution_pb2_grpc.py").read_text()
    assert "from resolver._proto import" in source and "from dapr." not in source
