"""The ingestion benchmark runs on a tiny prefix, so it cannot rot between real runs; its figures name their
baselines from the same run."""

from __future__ import annotations

from bench.ingest import markdown, measure


def test_ingest_benchmark_measures_against_its_baselines() -> None:
    result = measure(60, 1)
    assert result["objects"] == 60 and len(result["bare_s"]) == len(result["ingest_s"]) == 1
    assert result["ratio"] > 0 and result["ratio_to_list_and_bare"] > 0 and result["ratio_to_same_items"] > 0
    assert len(result["same_items_s"]) == 1
    assert "bare BatchWriteItem loop (baseline)" in markdown(result)
