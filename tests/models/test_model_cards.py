"""The committed models: every card is valid, names its file's sha256 and its real tensor names; licences ship."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import pytest

from runtime.common.cards import ModelCard, load_cards

MODELS = Path(__file__).resolve().parents[2] / "runtime" / "models"


@pytest.fixture(scope="module")
def cards() -> dict[str, ModelCard]:
    return load_cards(MODELS)


def test_default_models_are_present(cards: dict[str, ModelCard]) -> None:
    assert {"person", "text", "otsu"} <= cards.keys()
    assert cards["person"].runtime == cards["text"].runtime == "onnx"
    assert cards["otsu"].runtime == "opencv" and cards["otsu"].processor == "otsu"
    assert [c.name for c in cards["otsu"].classes] == ["foreground"]


@pytest.mark.parametrize("name", ["person", "text"])
def test_model_file_matches_card_sha256(cards: dict[str, ModelCard], name: str) -> None:
    card = cards[name]
    assert card.file and card.sha256
    data = (MODELS / name / card.file).read_bytes()
    assert hashlib.sha256(data).hexdigest() == card.sha256


@pytest.mark.parametrize("name", ["person", "text"])
def test_card_tensor_names_and_shapes_match_model(cards: dict[str, ModelCard], name: str) -> None:
    card = cards[name]
    assert card.file and card.input and card.output
    graph = onnx.load(str(MODELS / name / card.file), load_external_data=False).graph
    inputs = {i.name: i for i in graph.input}
    outputs = {o.name: o for o in graph.output}
    assert card.input.name in inputs and card.output.name in outputs
    dims = inputs[card.input.name].type.tensor_type.shape.dim
    assert dims[1].dim_value == 3  # NCHW, three colour channels
    if card.input.size:
        assert (dims[2].dim_value, dims[3].dim_value) == card.input.size
    assert dims[0].dim_param  # symbolic batch dimension: the worker may batch images
    assert outputs[card.output.name].type.tensor_type.shape.dim[1].dim_value == 1


def test_person_and_text_cards_follow_their_sources(cards: dict[str, ModelCard]) -> None:
    person, text = cards["person"], cards["text"]
    assert person.input and person.output and text.input and text.output
    assert (person.input.color_order, person.input.resize, person.output.threshold) == ("RGB", "stretch", 0.5)
    assert person.input.scale == pytest.approx(1 / 255) and person.input.mean == (0.0, 0.0, 0.0)
    assert [(c.id, c.name) for c in person.classes] == [(1, "person")]
    assert (text.input.color_order, text.input.short_side, text.input.multiple_of) == ("BGR", 736, 32)
    assert text.input.mean == text.input.std == (0.5, 0.5, 0.5) and text.output.threshold == 0.3
    assert [(c.id, c.name) for c in text.classes] == [(1, "text")]


@pytest.mark.parametrize("name", ["person", "text"])
def test_licence_ships_with_model(name: str) -> None:
    text = (MODELS / name / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0" in text
