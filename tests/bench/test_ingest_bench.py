"""The ingestion benchmark runs on a tiny prefix, so it cannot rot between real runs; its figures name their
baselines from the same run."""

from __future__ import annotations

from bench.ingest import RUNS, markdown, measure, run_order


def test_ingest_benchmark_measures_against_its_baselines() -> None:
    result = measure(60, 2)
    assert result["objects"] == 60 and len(result["bare_s"]) == len(result["ingest_s"]) == 2
    assert result["ratio"] > 0 and result["ratio_to_list_and_bare"] > 0 and result["ratio_to_same_items"] > 0
    assert len(result["same_items_s"]) == len(result["list_and_bare_s"]) == 2
    assert [tuple(order) for order in result["orders"]] == [RUNS, RUNS[::-1]]
    report = markdown(result)
    assert "bare BatchWriteItem loop (baseline)" in report
    assert "ingest, same, listed, bare" in report


def test_no_run_always_comes_last() -> None:
    """Each run adds to the one table, so whichever ran last would always meet the biggest one."""
    last = {run_order(rep)[-1] for rep in range(2)}
    first = {run_order(rep)[0] for rep in range(2)}
    assert last == first == {"bare", "ingest"}
    assert all(sorted(run_order(rep)) == sorted(RUNS) for rep in range(4))
