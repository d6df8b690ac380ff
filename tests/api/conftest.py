"""API fixtures: a tiny models folder (the repo's real cards may not exist yet) and the app on fresh resources."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from runtime.api.main import create_app
from runtime.common.settings import Settings
from tests.api.helpers import AUTH


def write_card(models_dir: Path, name: str) -> None:
    card = {
        "name": name,
        "version": "1",
        "title": f"{name} test model",
        "license": "Apache-2.0",
        "source": "tests",
        "input": {"size": [64, 64]},
        "output": {"activation": "none", "threshold": 0.5},
        "classes": [{"id": 1, "name": name.replace("-", "_")}],
    }
    (models_dir / name).mkdir(parents=True, exist_ok=True)
    (models_dir / name / "card.json").write_text(json.dumps(card))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_card(root, "person")
    write_card(root, "text")
    return root


@pytest.fixture()
def api_settings(settings: Settings, models_dir: Path) -> Settings:
    """Window 0: jobs are sent to SQS before the response, so tests can read the queue right away. No wake queue:
    waking workers after an enqueue is the micro-batcher's part (tests/api/test_batcher.py)."""
    return settings.model_copy(update={"models_dir": models_dir, "batch_window_s": 0.0, "wake_queue_url": ""})


@pytest.fixture()
def api(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings), headers=AUTH) as c:
        yield c
