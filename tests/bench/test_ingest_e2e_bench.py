"""The end-to-end ingestion benchmark on four photos, so it cannot rot between real runs: it must see every photo
of the prefix through to a completed batch and report how long each phase took."""

from __future__ import annotations

import pytest

from bench.ingest_e2e import markdown, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_a_prefix_of_photos_is_reported_as_a_completed_batch() -> None:
    report = run(4, 128, 1, 120.0)
    assert report["state"] == "COMPLETED" and report["counts"]["SUCCEEDED"] == 4 == sum(report["counts"].values())
    assert report["request_to_completed_seconds"] > 0 and report["ingest_seconds"] is not None
    assert "| jobs / succeeded / failed | 4 / 4 / 0 |" in markdown(report)
