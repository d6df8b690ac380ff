"""Images that build: wheels for each base image, the build context, pip kept out, the size budget, the worker runs.

The slow tests need PyPI (they resolve or install the pinned requirements for the image's platform); the
installed folders are cached under .cache/images while requirements and trimming are unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacks import assets
from tests.images.images import (
    AMAZON_LINUX_2_PYTHON_311,
    BASES,
    IMAGES,
    ROOT,
    RUNTIME,
    Image,
    Platform,
    built_dependencies,
    distributions,
    pip,
    size_mb,
)

# Installed dependencies per image, after trimming (MB). The worker's is start-up time for every batch.
BUDGET_MB = {"worker/Dockerfile": 350, "api/Dockerfile": 60, "api/Dockerfile.lambda": 60, "results/Dockerfile": 55}
ids = [i.name for i in IMAGES]


def test_every_image_is_known() -> None:
    assert {i.name for i in IMAGES} == set(BUDGET_MB)
    for image in IMAGES:
        assert all(base in BASES for base in image.bases), f"{image.name}: add {image.bases} to BASES with its facts"
        assert image.requirements.is_file()


@pytest.mark.parametrize("image", IMAGES, ids=ids)
def test_requirements_are_the_tested_pins(image: Image) -> None:
    """Each image installs exactly the versions the test suite runs (the top-level requirements.txt)."""
    top = set((ROOT / "requirements.txt").read_text().split())
    pins = [r for r in image.requirements.read_text().split() if "==" in r]
    assert pins and all(p in top for p in pins), [p for p in pins if p not in top]


@pytest.mark.parametrize("image", IMAGES, ids=ids)
def test_builds_install_wheels_only_and_keep_pip_out_of_the_runtime(image: Image) -> None:
    runs = " ".join(args for word, args in image.instructions if word == "RUN")
    assert "--only-binary=:all:" in runs, "a source build in the image would need a compiler the base lacks"
    if "venv" in runs:
        assert "venv --without-pip" in runs, "the runtime venv must not carry pip or setuptools"
    else:
        assert "--target" in runs  # Lambda: into a folder the base image's own pip does not live in


def test_lambda_base_has_a_python_the_pins_support() -> None:
    (lambda_image,) = [i for i in IMAGES if i.dockerfile.name == "Dockerfile.lambda"]
    assert lambda_image.platform.glibc >= (2, 28), "the pinned Pillow ships manylinux_2_28 wheels only"


# --- the build context: runtime/.dockerignore and the CDK asset excludes --------------------------------------


def _ignore_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_dockerignore_is_the_cdk_common_excludes() -> None:
    """CDK reads runtime/.dockerignore and adds each service's excludes; a plain docker build reads the same file."""
    assert assets.common_excludes() == _ignore_lines(RUNTIME / ".dockerignore")


@pytest.mark.parametrize("image", IMAGES, ids=ids)
def test_dockerfile_ignore_matches_the_asset(image: Image) -> None:
    """``<Dockerfile>.dockerignore`` (what BuildKit uses for that Dockerfile) leaves out what the CDK asset does."""
    own = image.dockerfile.with_name(image.dockerfile.name + ".dockerignore")
    assert own.is_file(), f"add {own.relative_to(ROOT)}"
    assert sorted(_ignore_lines(own)) == sorted(assets.asset_excludes(image.service))


# --- wheels for each base image (PyPI) -------------------------------------------------------------------------


def resolve(requirements: Path, platform: Platform, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    report = tmp_path / "report.json"
    return pip(
        "install", "--dry-run", "--ignore-installed", "--quiet", "--target", str(tmp_path / "t"),
        "--report", str(report), *platform.pip_args(), "-r", str(requirements),
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("image", IMAGES, ids=ids)
def test_pinned_requirements_resolve_to_wheels_for_the_base_image(image: Image, tmp_path: Path) -> None:
    proc = resolve(image.requirements, image.platform, tmp_path)
    assert proc.returncode == 0, f"{image.name} on {image.bases[-1]} ({image.platform}):\n{proc.stderr[-3000:]}"
    installs = json.loads((tmp_path / "report.json").read_text())["install"]
    files = [i["download_info"]["url"].rsplit("/", 1)[1] for i in installs]
    assert files and all(f.endswith(".whl") for f in files), files
    pinned = {r.split("==")[0].lower() for r in image.requirements.read_text().split() if "==" in r}
    assert pinned <= {i["metadata"]["name"].lower() for i in installs}


@pytest.mark.slow
def test_the_old_lambda_base_is_refused(tmp_path: Path) -> None:
    """The check can fail: on Amazon Linux 2 (glibc 2.26) the pinned Pillow has no wheel."""
    proc = resolve(RUNTIME / "api" / "requirements.txt", AMAZON_LINUX_2_PYTHON_311, tmp_path)
    assert proc.returncode != 0
    assert "pillow" in proc.stderr.lower()


# --- installed size and the worker from its trimmed dependencies (PyPI) ----------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("image", IMAGES, ids=ids)
def test_installed_dependencies_fit_the_budget(image: Image) -> None:
    site = built_dependencies(image)
    size = size_mb(site)
    trimmed = (site.parent / ".complete").read_text().strip()  # slim.py's own account of what it removed
    print(f"{image.name}: {size:.0f} MB installed (budget {BUDGET_MB[image.name]} MB); {trimmed}")
    assert size <= BUDGET_MB[image.name], f"{image.name}: {size:.0f} MB > {BUDGET_MB[image.name]} MB"
    assert not {"pip", "setuptools", "wheel"} & distributions(site)
    assert not list(site.glob("*/**/tests")), "test suites are trimmed"
    kept = {p.name for p in (site / "botocore" / "data").iterdir() if p.is_dir()}
    assert kept == image.botocore_services()


@pytest.mark.slow
def test_worker_runs_from_its_trimmed_dependencies(tmp_path: Path, moto_endpoint: str) -> None:
    """The worker, with only its image's (trimmed) dependencies importable, processes a real photo to SUCCEEDED.

    Runs with the image's environment and a fresh HOME: onnxruntime must leave HOME untouched.
    """
    from local.resources import create_resources
    from runtime.common.aws import client
    from runtime.common.jobs import JobStore, NewJob
    from runtime.common.messages import chunk
    from tests.e2e.photos import GRACE_HOPPER

    (worker,) = [i for i in IMAGES if i.name == "worker/Dockerfile"]
    site = built_dependencies(worker)
    res = create_resources(moto_endpoint, prefix=f"img{os.getpid()}")
    settings = res.settings()
    s3 = client("s3", settings)
    store = JobStore.from_settings(settings, client("dynamodb", settings))
    key = "uploads/" + "a" * 32 + "/" + "b" * 32 + ".jpg"
    s3.put_object(Bucket=res.bucket, Key=key, Body=GRACE_HOPPER.read_bytes())
    store.create(NewJob(job_id="b" * 32, batch_id="a" * 32, input_key=key, file_name="p.jpg", model="person"))
    home = tmp_path / "home"
    home.mkdir()
    image_env = {k: v for k, v in worker.env.items() if k != "PATH"}  # PATH names the image's venv
    env = {
        **image_env,
        **res.env(),
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),  # the trimmed dependencies, then our code
        "JOB_BATCH": chunk(["b" * 32], 10)[0].to_body(),
    }
    # -S: no site-packages of the test venv; only PYTHONPATH (the image's dependencies) is importable.
    argv = [sys.executable, "-S", "-m", "runtime.worker"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = store.get("b" * 32)
    assert job is not None and job["status"] == "SUCCEEDED", job
    assert not list(home.iterdir()), f"written under HOME: {list(home.rglob('*'))}"
