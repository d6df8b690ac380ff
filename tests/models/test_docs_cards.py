"""The example card in docs/models.md is a valid card, so the documentation cannot drift from the schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

from runtime.common.cards import ModelCard

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def test_example_cards_in_docs_validate() -> None:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert blocks, "docs/models.md has no example card"
    for block in blocks:
        card = ModelCard.model_validate(json.loads(block))
        assert card.output is not None and card.output.activation == "softmax"
        assert {c.name for c in card.classes} == {"cat", "dog", "person"}
