"""Lint and types are part of the test suite, so CI enforces them (generated stubs excluded)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False,
                          timeout=300)


def test_ruff_is_clean() -> None:
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = run("mypy", "resolver", "scripts", "bench", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_layers_and_the_dependency_boundaries_hold() -> None:
    """resolver/__init__.py states the layer order; import-linter holds the code to it, and keeps
    ``etcd3`` inside resolver.etcd and ``kubernetes`` inside resolver.publisher (pyproject.toml)."""
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout, result.stdout


def import_cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(imports):
        if root in order:
            continue
        work = [(root, iter(sorted(imports[root])))]
        order[root] = low[root] = len(order)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in order:
                    order[target] = low[target] = len(order)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(imports.get(target, ())))))
                elif target in on_stack:
                    low[module] = min(low[module], order[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == order[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_import_cycles_are_found() -> None:
    """The finder itself: a circle of three and a self-contained chain."""
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_through_others() -> None:
    """Layers say nothing inside a package: no circle of imports between any two modules of
    ``resolver``, ``TYPE_CHECKING`` imports included (a type-only circle is still a circle for a
    reader of the code)."""
    import grimp  # import-linter's own graph builder

    graph = grimp.build_graph("resolver", cache_dir=None)
    imports = {module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules}
    assert import_cycles(imports) == []


GO_PEERS = ROOT / "tests" / "peers"


def _go(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:/usr/local/go/bin", "CGO_ENABLED": "0",
           "GOFLAGS": "-mod=readonly"}
    return subprocess.run(["go", *args], cwd=GO_PEERS / module, capture_output=True, text=True, check=False,
                          timeout=600, env=env)


@pytest.mark.timeout(900)  # the first vet on a machine type-checks daprd's dependencies (~1 min per module)
def test_our_go_test_programs_are_gofmt_and_vet_clean() -> None:
    """tests/peers/ holds only small main modules of ours (the peers' own code comes from the
    module proxy); they are held to gofmt and go vet like the Python to ruff and mypy."""
    listed = subprocess.run(["gofmt", "-l", "."], cwd=GO_PEERS, capture_output=True, text=True, check=False,
                            timeout=60, env={**os.environ, "PATH": f"{os.environ.get('PATH', '')}:/usr/local/go/bin"})
    assert listed.returncode == 0 and listed.stdout == "", listed.stdout + listed.stderr
    for module in ("dapr", "dapr-1.16"):
        vet = _go(module, "vet", "-trimpath", "-tags", "stablecomponents", "./...")
        assert vet.returncode == 0, module + ": " + vet.stdout + vet.stderr


def test_the_etcd_client_is_python3_etcd3_never_the_etcd3_distribution() -> None:
    """Both install the module ``etcd3``; the original ``etcd3`` 0.12 does not import under
    protobuf ≥ 4, and depending on both makes the installed one a matter of install order."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    requirements = [*project["dependencies"], *(d for extra in extras for d in extra)]
    names = {re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")  # type: ignore[union-attr]
             for requirement in requirements}
    assert "python3-etcd3" in names
    assert "etcd3" not in names
