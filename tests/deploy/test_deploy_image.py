"""The image is reproducible: its build installs exactly the versions of deploy/image/constraints.txt.

Checked without building (no Docker engine here): the Dockerfile passes the constraints file to
both pip steps and the build context contains it; every dependency of ``pyproject.toml`` (and of
the examples extra, which shares the environment) is pinned with ``==`` and the pin satisfies
the requirement; the image label and the manifests name the release CHANGELOG.md names.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "deploy/image/constraints.txt"


def pins() -> dict[str, Version]:
    found: dict[str, Version] = {}
    for raw in CONSTRAINTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"not an exact pin: {line}"
        assert canonicalize_name(requirement.name) not in found, f"pinned twice: {requirement.name}"
        found[canonicalize_name(requirement.name)] = Version(specifiers[0].version)
    return found


def project() -> dict[str, object]:
    document: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return document


def requirements() -> list[Requirement]:
    meta = project()
    extras = meta["optional-dependencies"]
    assert isinstance(extras, dict) and isinstance(meta["dependencies"], list)
    return [Requirement(text) for text in [*meta["dependencies"], *extras["examples"]]]


def test_every_dependency_is_pinned_and_the_pin_satisfies_it() -> None:
    pinned = pins()
    environment = {key: str(value) for key, value in default_environment().items()}
    environment.update(sys_platform="linux", platform_system="Linux")  # the image's, wherever the test runs
    for requirement in requirements():
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is a dependency but not pinned in {CONSTRAINTS.name}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]} breaks " \
            f"{requirement}"
    assert pinned[canonicalize_name("kubernetes")] != Version("37.0.2")
    assert pinned[canonicalize_name("python-dateutil")] < Version("3")  # what the Dapr SDK accepts


def test_kubernetes_requirement_excludes_the_one_release_the_dapr_sdk_cannot_share() -> None:
    kubernetes = next(r for r in requirements() if r.name == "kubernetes")
    assert not kubernetes.specifier.contains("37.0.2") and kubernetes.specifier.contains("37.0.1")


def test_dockerfile_installs_with_the_constraints_and_the_context_carries_them() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pip_steps = [line for line in re.split(r"\n(?=\S)", dockerfile) if line.startswith("RUN pip ")]
    assert len(pip_steps) == 2 and all("--constraint" in step for step in pip_steps)
    assert "COPY deploy/image/constraints.txt" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "deploy/*" not in ignored or "!deploy/image" in ignored  # excluded manifests, kept constraints


def released_version() -> str:
    """The newest release in CHANGELOG.md (the package version follows it when the release is cut)."""
    found = re.search(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert found, "CHANGELOG.md names no release"
    return found.group(1)


def test_versions_agree_between_changelog_image_and_manifests() -> None:
    version = released_version()
    assert Version(str(project()["version"])) <= Version(version)
    assert f'org.opencontainers.image.version="{version}"' in (ROOT / "Dockerfile").read_text()
    kustomization = yaml.safe_load((ROOT / "deploy/base/kustomization.yaml").read_text())
    assert kustomization["images"][0]["newTag"] == version
    for manifest in (ROOT / "deploy/examples").rglob("*.yaml"):
        for image in re.findall(r"image: (\S+)", manifest.read_text()):
            assert image.endswith(f":{version}"), f"{manifest}: {image}"
