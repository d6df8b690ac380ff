"""The moto server benchmark runs on tiny inputs, so it cannot rot between real runs; its ratios are against the
stock server measured in the same run."""

from __future__ import annotations

from bench.moto_server import markdown, measure


def test_moto_server_benchmark_measures_fast_against_stock() -> None:
    result = measure(keys=30, items=20, reps=1, rounds=4, pages=1, jobs=60)
    assert set(result["figures"]) == {"mix", "query", "list", "reconcile"}
    for figure in result["figures"].values():
        assert figure["fast_per_s"] > 0 and figure["stock_per_s"] > 0 and figure["ratio"] > 0
    assert "stock /s (baseline)" in markdown(result)
