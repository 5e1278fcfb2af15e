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
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = first_block_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert any(line.startswith(tests) for line in ci), f".ci/run does not run: {tests}"
