"""Worker fixtures: a models folder with the tiny redness model under several cards, built once per module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime.common.aws import client
from runtime.common.settings import Settings
from tests.worker.helpers import write_card, write_otsu_card


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_card(root, "red")  # fixed 64x64 stretch
    write_card(
        root,
        "red-aspect",
        input={"short_side": 48, "multiple_of": 16, "max_side": 256, "resize": "keep_aspect", "color_order": "RGB"},
    )
    write_otsu_card(root, "blobs")
    write_card(root, "red-tampered", sha256="0" * 64)  # the file does not match its card
    (root / "broken").mkdir()
    (root / "broken" / "card.json").write_text('{"name": "broken", "version": "1"}')  # invalid card
    return root


@pytest.fixture()
def worker_settings(settings: Settings, models_dir: Path) -> Settings:
    return settings.model_copy(update={"models_dir": models_dir, "worker_io_threads": 4, "max_pixels": 4_000_000})


@pytest.fixture()
def s3(worker_settings: Settings) -> Any:
    return client("s3", worker_settings)
