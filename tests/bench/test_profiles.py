"""The profiling tools run on a tiny input and print every stage they promise (they are not benchmark modules,
so the smoke test of the harness does not run them)."""

from __future__ import annotations

import pytest

from bench import profile_api, profile_worker


@pytest.mark.parametrize("extra", [[], ["--reference"]])
def test_worker_profile_prints_each_stage(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert profile_worker.main(["--images", "2", "--size", "640x480", "--top", "3", *extra]) == 0
    out = capsys.readouterr().out
    for stage in ("decode", "preprocess", "inference", "postprocess", "mask PNG", "overlay JPEG", "total"):
        assert f"  {stage} " in out, stage


def test_overlay_formats_are_compared_at_their_quality(capsys: pytest.CaptureFixture[str]) -> None:
    assert profile_worker.main(["--images", "1", "--size", "640x480", "--formats"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  JPEG q85")]
    assert len(rows) == 1 and 0.9 < float(rows[0][2]) <= 1.0  # SSIM of the worker's own setting


def test_api_profile_splits_the_handler(capsys: pytest.CaptureFixture[str]) -> None:
    assert profile_api.main(["--uploads", "2"]) == 0
    out = capsys.readouterr().out
    for stage in ("multipart parse", "image check", "S3 PUT", "DynamoDB put", "rest of accept", "total"):
        assert f"  {stage} " in out, stage
