"""Every benchmark module that exists runs once on its tiny input, so the benchmarks cannot rot between real runs.

Runs in-process (a traceback here points at the benchmark's own line); the harness tests cover the
separate-process path that `make bench` uses.
"""

from __future__ import annotations

import pytest

from bench.aggregate import figure_problems
from bench.child import run_module
from bench.harness import EXPECTED_MODULES, dotted, module_exists
from bench.report import render_table

# Figures each module promises to compare with a baseline measured in the same run.
PROMISED_BASELINES = {"worker_throughput": 1, "e2e_local": 1}
# Modules whose quick run starts the whole local stack: too slow for `make test-fast`.
SLOW = {"e2e_local"}


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in EXPECTED_MODULES if n in SLOW])
def test_slow_benchmark_runs_quick(name: str) -> None:
    _check_quick_run(name)


@pytest.mark.parametrize("name", [n for n in EXPECTED_MODULES if n not in SLOW])
def test_benchmark_runs_quick(name: str) -> None:
    _check_quick_run(name)


def _check_quick_run(name: str) -> None:
    if not module_exists(name):
        pytest.skip(f"bench/{name}.py does not exist yet")
    figures = run_module(dotted(name), quick=True)
    assert figures, f"{name}.run(quick=True) returned no figures"
    problems = [p for f in figures for p in figure_problems(f)]
    assert not problems, problems
    with_baseline = [f for f in figures if f.baseline_value is not None]
    assert len(with_baseline) >= PROMISED_BASELINES.get(name, 0), f"{name} promised a baseline"
    assert all(f.ratio is not None and f.ratio > 0 for f in with_baseline)
    assert len({(f.benchmark, f.name) for f in figures}) == len(figures), "figure names must be unique"
    assert render_table(figures).count("\n") == len(figures) + 1
