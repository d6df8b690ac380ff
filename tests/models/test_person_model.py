"""The committed person model on real photos: people are found, a scene without people is left empty."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.models.photos import NO_PEOPLE, PEOPLE, person_input, stretched

MODEL = Path(__file__).resolve().parents[2] / "runtime" / "models" / "person" / "model.onnx"


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def probabilities(session: ort.InferenceSession) -> dict[str, np.ndarray]:
    names = [*PEOPLE, *NO_PEOPLE]
    (out,) = session.run(["output"], {"input": person_input([stretched(n) for n in names])})
    return {n: out[i, 0] for i, n in enumerate(names)}


def test_output_is_a_probability_map(probabilities: dict[str, np.ndarray]) -> None:
    for prob in probabilities.values():
        assert prob.shape == (256, 256) and prob.dtype == np.float32
        assert float(prob.min()) >= 0.0 and float(prob.max()) <= 1.0


@pytest.mark.parametrize("name", PEOPLE)
def test_person_photo_gets_a_person_mask(name: str, probabilities: dict[str, np.ndarray]) -> None:
    mask = probabilities[name] > 0.5
    assert 0.15 < mask.mean() < 0.9, f"{name}: person fraction {mask.mean():.3f}"
    # the person is in the middle of these portraits, not along the top edge
    assert mask[96:160, 96:160].mean() > 0.5
    assert mask[:8].mean() < 0.5


@pytest.mark.parametrize("name", NO_PEOPLE)
def test_scene_without_people_stays_empty(name: str, probabilities: dict[str, np.ndarray]) -> None:
    assert (probabilities[name] > 0.5).mean() < 0.01


def test_batched_and_single_runs_agree(session: ort.InferenceSession, probabilities: dict[str, np.ndarray]) -> None:
    (single,) = session.run(["output"], {"input": person_input([stretched("astronaut")])})
    assert single.shape == (1, 1, 256, 256)
    np.testing.assert_allclose(single[0, 0], probabilities["astronaut"], atol=1e-5)
