"""The results image stays lean: its code imports only what runtime/results/requirements.txt installs, the pins
match the project's, the real model cards give export columns, and the Dockerfile passes hadolint."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from runtime.common.settings import DEFAULT_MODELS_DIR
from runtime.results.rows import RowFormat, card_classes

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numpy", "cv2", "onnxruntime", "fastapi", "matplotlib", "aws_cdk")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\[\]-]+)==(\S+)", line.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_results_code_imports_no_heavy_package() -> None:
    code = (
        "import json, sys\n"
        "import runtime.results.cli, runtime.results.export, runtime.results.report, runtime.results.reconcile\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_image_requirements_match_the_project_pins() -> None:
    image = _pins(ROOT / "runtime/results/requirements.txt")
    project = _pins(ROOT / "requirements.txt")
    assert set(image) == {"boto3", "pydantic", "pydantic-settings", "pillow"}
    assert all(project[name] == version for name, version in image.items())


def test_the_real_cards_give_class_columns() -> None:
    classes = card_classes(DEFAULT_MODELS_DIR)
    assert classes and len(set(classes)) == len(classes)
    assert f"{classes[0]}_area_mm2" in RowFormat(classes).columns


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    out = subprocess.run(
        [str(hadolint), "--failure-threshold", "warning", str(ROOT / "runtime/results/Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
