"""Every Dockerfile passes hadolint, and no image's build context leaves out a file its Dockerfile copies.

No Docker engine runs in CI, so these static checks (plus the entry points' own tests) are what we have.
"""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from pathlib import Path

import pytest

from stacks import assets
from tests.cdk.conftest import ROOT

pytestmark = pytest.mark.cdk

HADOLINT = Path(sys.executable).parent / "hadolint"
RUNTIME = ROOT / "runtime"
DOCKERFILES = sorted(p for p in RUNTIME.glob("*/Dockerfile*") if p.suffix != ".dockerignore")


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HADOLINT), "--failure-threshold", "warning", str(path)], capture_output=True, text=True, timeout=60
    )


def test_all_images_have_dockerfiles() -> None:
    names = {str(p.relative_to(RUNTIME)) for p in DOCKERFILES}
    assert {"api/Dockerfile", "api/Dockerfile.lambda", "worker/Dockerfile", "results/Dockerfile"} <= names


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(RUNTIME)))
def test_hadolint(path: Path) -> None:
    result = hadolint(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(RUNTIME)))
def test_images_run_as_non_root_from_multi_stage_pinned_bases(path: Path) -> None:
    lines = [line.strip() for line in path.read_text().splitlines()]
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage: build tools stay out of the final image"
    assert all(":" in image and not image.endswith(":latest") for image in froms)
    users = [line for line in lines if line.startswith("USER ")]
    if path.name == "Dockerfile.lambda":
        assert not users or users[-1] != "USER root"  # Lambda runs the function as its own sandbox user
    else:
        assert users and users[-1] in {"USER 10001", "USER segscale"}


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    assert hadolint(bad).returncode != 0


def _copied_sources(path: Path) -> list[str]:
    """Paths a Dockerfile COPYs from its build context (not from another stage)."""
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
            out += [p for p in parts[1:-1] if not p.startswith("--")]
    return out


@pytest.mark.parametrize("service", sorted(assets.EXCLUDES))
def test_asset_excludes_keep_what_the_dockerfile_copies(service: str) -> None:
    excludes = assets.asset_excludes(service)
    for dockerfile in RUNTIME.glob(f"{service}/Dockerfile*"):
        for source in _copied_sources(dockerfile):
            for file in [RUNTIME / source] if (RUNTIME / source).is_file() else (RUNTIME / source).rglob("*"):
                rel = str(file.relative_to(RUNTIME))
                if file.is_file() and not file.name.endswith((".pyc", ".onnx", ".dockerignore")):
                    assert not any(
                        fnmatch.fnmatch(rel, pattern) or rel.startswith(pattern.rstrip("/") + "/")
                        for pattern in excludes
                    ), f"{dockerfile.name} copies {rel}, which the {service} asset excludes"
