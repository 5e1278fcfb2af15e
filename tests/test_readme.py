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


# -- the documentation that ships: links and help texts (its JSON Schemas: tests/registry/test_schema.py) --------------

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
