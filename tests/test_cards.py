"""The card validator gives a precise message for each kind of bad card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.common.cards import CardError, load_card, load_cards

GOOD = {
    "name": "demo",
    "version": "1",
    "license": "MIT",
    "source": "test",
    "input": {"size": [8, 8]},
    "output": {"threshold": 0.5},
    "classes": [{"id": 1, "name": "thing"}],
}


def _write(tmp_path: Path, folder: str, content: bytes) -> Path:
    path = tmp_path / folder / "card.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


def test_good_card_loads(tmp_path: Path) -> None:
    _write(tmp_path, "demo", json.dumps(GOOD).encode())
    assert load_cards(tmp_path)["demo"].classes[0].name == "thing"


@pytest.mark.parametrize(
    ("folder", "content", "message"),
    [
        ("demo", b"\xff\xfe\x00bad", "cannot read the card as UTF-8"),
        ("demo", b"{not json", "not valid JSON"),
        ("other", json.dumps(GOOD).encode(), "must match its folder name 'other'"),
        ("demo", json.dumps({**GOOD, "classes": []}).encode(), "classes"),
        ("demo", json.dumps({**GOOD, "input": {"size": [8, 8], "std": [1, 0, 1]}}).encode(), "std must not contain 0"),
        ("demo", json.dumps({**GOOD, "input": {"layout": "NCHW"}}).encode(), "needs a fixed 'size'"),
        ("demo", json.dumps({**GOOD, "extra": 1}).encode(), "extra: Extra inputs are not permitted"),
        ("demo", json.dumps({**GOOD, "runtime": "opencv", "processor": None}).encode(), "needs 'processor'"),
    ],
)
def test_bad_cards_name_the_problem(tmp_path: Path, folder: str, content: bytes, message: str) -> None:
    path = _write(tmp_path, folder, content)
    with pytest.raises(CardError, match=r"card\.json") as info:
        load_card(path)
    assert message in str(info.value)
