"""The converted person model against MediaPipe's own inference of the original TFLite file, on real photos.

Slow: builds (once) the reference venv from PyPI; the comparison itself takes a few seconds.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.models.photos import person_input, stretched
from tests.models.reference_env import reference_python
from tools.fetch_sources import MEDIAPIPE, SELFIE_TFLITE, SELFIE_TFLITE_SHA256, fetch_wheel, read_member

MODEL = Path(__file__).resolve().parents[2] / "runtime" / "models" / "person" / "model.onnx"
PHOTOS = ("astronaut", "coffee", "rocket", "grace_hopper")
TOLERANCE = 1e-3

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference_masks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    work = tmp_path_factory.mktemp("mediapipe_reference")
    tflite = work / "selfie_segmentation.tflite"
    tflite.write_bytes(read_member(fetch_wheel(MEDIAPIPE), SELFIE_TFLITE, SELFIE_TFLITE_SHA256))
    np.savez(work / "images.npz", **{name: stretched(name) for name in PHOTOS})
    script = Path(__file__).with_name("mediapipe_reference.py")
    proc = subprocess.run(
        [str(reference_python()), str(script), str(tflite), str(work / "images.npz"), str(work / "masks.npz")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(work / "masks.npz") as masks:
        return {name: masks[name] for name in masks.files}


@pytest.fixture(scope="module")
def converted_masks() -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    batch = person_input([stretched(name) for name in PHOTOS])  # one batch of 4: the batch dimension is dynamic
    (out,) = session.run(["output"], {"input": batch})
    return {name: out[i, 0] for i, name in enumerate(PHOTOS)}


@pytest.mark.parametrize("name", PHOTOS)
def test_converted_model_matches_mediapipe(
    name: str, reference_masks: dict[str, np.ndarray], converted_masks: dict[str, np.ndarray]
) -> None:
    ref, ours = reference_masks[name], converted_masks[name]
    assert ref.shape == ours.shape == (256, 256)
    diff = float(np.abs(ref - ours).max())
    assert diff < TOLERANCE, f"{name}: max abs difference {diff:.2e}"
    # the same pixels are "person" at the card's threshold, bar a handful that sit right at 0.5
    assert int(np.count_nonzero((ref > 0.5) != (ours > 0.5))) <= 5


def test_reference_is_informative(reference_masks: dict[str, np.ndarray]) -> None:
    """Guards the comparison itself: the reference finds the astronaut and nothing on the rocket scene."""
    assert (reference_masks["astronaut"] > 0.5).mean() > 0.2
    assert (reference_masks["rocket"] > 0.5).mean() < 0.01
