"""The committed text model (PP-OCRv4 detection), preprocessed as its card says: text on a page, little on a face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from runtime.common.cards import ModelCard, load_card
from tests.models.photos import photo

FOLDER = Path(__file__).resolve().parents[2] / "runtime" / "models" / "text"


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return load_card(FOLDER / "card.json")


@pytest.fixture(scope="module")
def session(card: ModelCard) -> ort.InferenceSession:
    assert card.file
    return ort.InferenceSession(str(FOLDER / card.file), providers=["CPUExecutionProvider"])


def _text_fraction(card: ModelCard, session: ort.InferenceSession, rgb: np.ndarray) -> float:
    spec, out = card.input, card.output
    assert spec and out and spec.short_side
    h, w = rgb.shape[:2]
    scale = spec.short_side / min(h, w)
    th, tw = (max(spec.multiple_of, round(s * scale / spec.multiple_of) * spec.multiple_of) for s in (h, w))
    resized = np.asarray(Image.fromarray(rgb).resize((tw, th), Image.Resampling.BILINEAR), np.float32)
    bgr = resized[..., ::-1] if spec.color_order == "BGR" else resized
    x = (bgr * spec.scale - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)
    (prob,) = session.run([out.name], {spec.name: x.transpose(2, 0, 1)[None].astype(np.float32)})
    assert prob.shape == (1, 1, th, tw)
    return float((prob[0, out.channel] > out.threshold).mean())


def test_page_has_text_and_astronaut_has_little(card: ModelCard, session: ort.InferenceSession) -> None:
    page = _text_fraction(card, session, photo("page"))  # grayscale scan, as RGB
    astronaut = _text_fraction(card, session, photo("astronaut"))
    assert page > 0.05, f"page: text fraction {page:.3f}"
    assert astronaut < 0.02, f"astronaut: text fraction {astronaut:.3f}"
    assert page > 10 * astronaut
