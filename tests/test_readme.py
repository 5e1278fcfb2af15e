"""The README's first screen has exactly two set-up commands, and CI runs the test one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def first_block_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.DOTALL)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_two_setup_commands_on_the_first_screen() -> None:
    text = (ROOT / "README.md").read_text()
    assert text.index("```bash") < 40 * 80  # within the first screen
    demo, tests = first_block_commands()
    assert demo.endswith("dapr-etcd-resolver demo")
    # it installs everything itself (system peers, the venv, the test extra), then runs pytest twice:
    # the whole suite, and the registry tests against Debian's etcd 3.4
    for step in ("bash scripts/install-test-deps.sh", "python3 -m venv .venv", "pip install -q -e '.[test]'",
                 "-m pytest -n 4 &&", "-m 'registry and not soak' --etcd=/usr/bin/etcd"):
        assert step in tests, step
    installer = (ROOT / "scripts" / "install-test-deps.sh").read_text()
    assert "apt-get update" in installer and "apt-get install -y" in installer


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = first_block_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert any(line.startswith("{ " + tests + "; }") for line in ci), f".ci/run does not run: {tests}"


# -- the documentation that ships: links, help texts, JSON Schemas --------------------------------------------

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([\w./-]+)(?:#[^)]*)?\)")
_REPO_PATH = re.compile(r"`((?:deploy|docs|components|examples|scripts|proto|bench)/[^`\s*{<]*)`")


def test_documents_link_only_files_that_exist() -> None:
    missing = []
    for document in DOCS:
        text = document.read_text()
        targets = [document.parent / link for link in _LINK.findall(text) if "://" not in link]
        targets += [ROOT / path for path in _REPO_PATH.findall(text)]
        missing += [f"{document.relative_to(ROOT)} -> {target}" for target in targets if not target.exists()]
    assert not missing, "links to files that do not exist:\n" + "\n".join(missing)


def test_help_points_to_shipped_documents_without_rest_markup() -> None:
    from resolver.cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    pages = [parser.format_help()] + [sub.format_help() for sub in commands.choices.values()]  # type: ignore[union-attr]
    for page in pages:
        assert "DESIGN" not in page and "§" not in page and "``" not in page, page
        for document in re.findall(r"docs/[\w./-]+\.md", page):
            assert (ROOT / document).exists(), document


def _schema(name: str) -> dict[str, object]:
    import json

    return json.loads((ROOT / "docs" / "schema" / name).read_text())


def test_every_registry_value_the_code_writes_matches_its_json_schema() -> None:
    import json
    import time

    import jsonschema  # type: ignore[import-untyped]  # comes with kubernetes-validate (test extra)

    from resolver.records.schema import (
        ClusterInfo,
        ConflictMarker,
        EndpointRecord,
        Heartbeat,
        LastSeen,
        RegistryIdentity,
    )

    now = time.time()
    written = {
        "endpoint.json": [EndpointRecord("orders", "default", "cluster-1", "orders-7d9f-a1", "10.1.0.11", 50002,
                                         "node-1", "eu-1a").to_json(),
                          EndpointRecord("vm_app", "shop", "vms", "vm-1.example", "db.example.com", 3500).to_json()],
        "cluster-info.json": [ClusterInfo("cluster-1", "pub-a", "0.2.0", now).to_json(),
                              ClusterInfo("cluster-1", "pub-a", "0.2.0", now, now, 12, 15, "1" * 32).to_json()],
        "heartbeat.json": [Heartbeat("cluster-1", "1" * 32, "pub-a", 7, now, 15).to_json()],
        "lastseen.json": [LastSeen("cluster-1", "1" * 32, "pub-a", now, 12, "withdrawn").to_json()],
        "conflict.json": [ConflictMarker("cluster-1", "f" * 32, "pub-b", now).to_json()],
        "registry-identity.json": [RegistryIdentity.new().to_json()],
        "leader.json": [json.dumps({"identity": "pub-a-123", "since": now, "clusterUid": "1" * 32}).encode()],
        "member.json": [json.dumps({"cluster": "vms", "instance": "10-0-0-7-50002", "appId": "billing",
                                    "namespace": "default"}, separators=(",", ":")).encode()],
    }
    assert set(written) == {path.name for path in (ROOT / "docs" / "schema").glob("*.json")}
    for name, values in written.items():
        schema = _schema(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        for raw in values:
            jsonschema.validate(json.loads(raw), schema, cls=jsonschema.Draft202012Validator)
    bad = json.loads(written["endpoint.json"][0]) | {"port": 70000}
    try:
        jsonschema.validate(bad, _schema("endpoint.json"), cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the endpoint schema accepted port 70000")
