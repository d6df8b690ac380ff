"""The reproduction tool: it refuses a source file that is not the expected one, and rebuilds the committed files."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from tools.fetch_sources import SourceError, check_card_sha, main, read_member

MODELS = Path(__file__).resolve().parents[2] / "runtime" / "models"


@pytest.fixture()
def fake_wheel(tmp_path: Path) -> Path:
    path = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/model.bin", b"tampered bytes")
    return path


def test_read_member_refuses_a_wrong_sha256(fake_wheel: Path) -> None:
    good = hashlib.sha256(b"tampered bytes").hexdigest()
    assert read_member(fake_wheel, "pkg/model.bin", good) == b"tampered bytes"
    with pytest.raises(SourceError, match=r"pkg/model.bin .*expected 0{64}"):
        read_member(fake_wheel, "pkg/model.bin", "0" * 64)


def test_read_member_names_a_missing_file(fake_wheel: Path) -> None:
    with pytest.raises(SourceError, match=r"has no pkg/other\.bin"):
        read_member(fake_wheel, "pkg/other.bin")


def test_card_sha_update_edits_only_that_field(tmp_path: Path) -> None:
    card = tmp_path / "card.json"
    shutil.copy(MODELS / "person" / "card.json", card)
    original = card.read_text()
    problem = check_card_sha(card, b"another model", update=False)
    assert problem and "--update-cards" in problem and card.read_text() == original
    assert check_card_sha(card, b"another model", update=True) is None
    digest = hashlib.sha256(b"another model").hexdigest()
    assert json.loads(card.read_text())["sha256"] == digest
    changed = [(a, b) for a, b in zip(original.splitlines(), card.read_text().splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and digest in changed[0][1]


def test_unknown_model_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["nosuchmodel", "--check"])
    assert "unknown model(s) nosuchmodel" in capsys.readouterr().err


@pytest.mark.slow
def test_committed_models_are_reproduced_from_their_wheels(capsys: pytest.CaptureFixture[str]) -> None:
    """Downloads (or reuses) both wheels, rebuilds every file and compares byte for byte."""
    assert main(["--check"]) == 0, capsys.readouterr().err
