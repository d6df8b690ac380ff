"""The benchmark harness on figures and benchmark modules the test builds itself: medians, the table, the JSON
schema, the time budget, and that an overrunning benchmark is killed with everything it started."""

from __future__ import annotations

import json
import math
import os
import textwrap
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from bench import __main__ as bench_main
from bench.aggregate import figure_problems, median_figures
from bench.figures import Figure
from bench.harness import REPO_ROOT, run_all, run_module
from bench.report import build_doc, fmt, load_results, render_markdown, render_table, write_results

PKG = "segscale_fakebench"

MODULES = {
    # Values 5, 1, 3 and baselines 10, 2, 6 on repetitions 1, 2, 3: medians 3 and 6, ratio 0.5.
    "varying": """
        import os
        from pathlib import Path
        from bench.figures import Figure
        def run(*, quick=False):
            counter = Path(os.environ["FAKEBENCH_COUNTER"])
            n = int(counter.read_text()) if counter.exists() else 0
            counter.write_text(str(n + 1))
            value, base = [(5.0, 10.0), (1.0, 2.0), (3.0, 6.0)][n % 3]
            return [
                Figure("fake", "images/s", value, "images/s", "bare loop", base),
                Figure("fake", "p99 latency", 20.0 + n, "ms", higher_is_better=False, notes="quick" if quick else ""),
            ]
    """,
    "failing": """
        def run(*, quick=False):
            raise RuntimeError("the model file is missing")
    """,
    "malformed": """
        from bench.figures import Figure
        def run(*, quick=False):
            return [Figure("fake", "images/s", -1.0, "images/s")]
    """,
    "sleeper": """
        import os, subprocess, time
        from bench.figures import Figure
        def run(*, quick=False):
            child = subprocess.Popen(["sleep", "120"])
            with open(os.environ["FAKEBENCH_PIDFILE"], "w") as f:
                f.write(str(child.pid))
            time.sleep(120)
            return [Figure("fake", "never", 1.0, "s")]
    """,
    "steady": """
        import time
        from bench.figures import Figure
        def run(*, quick=False):
            time.sleep(2.0)
            return [Figure("fake", "steady", 1.0, "s")]
    """,
}


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fakebench")
    pkg = root / PKG
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, source in MODULES.items():
        (pkg / f"{name}.py").write_text(textwrap.dedent(source))
    return root


@pytest.fixture()
def env(fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment under which child processes find the fake package; the parent finds it on sys.path."""
    monkeypatch.syspath_prepend(str(fake_root))
    values = {
        "PYTHONPATH": os.pathsep.join([str(fake_root), str(REPO_ROOT)]),
        "FAKEBENCH_COUNTER": str(tmp_path / "counter"),
        "FAKEBENCH_PIDFILE": str(tmp_path / "pid"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return dict(os.environ)


def fig(value: float, baseline: float | None = None, name: str = "images/s") -> Figure:
    return Figure("b", name, value, "images/s", "bare" if baseline is not None else None, baseline)


# --- aggregation -----------------------------------------------------------------------------------------


def test_median_of_repetitions_keeps_samples_and_recomputes_ratio() -> None:
    runs = [[fig(4.0, 8.0), fig(1.0, name="other")], [fig(2.0, 10.0)], [fig(9.0, 9.0), fig(3.0, name="other")]]
    main, other = median_figures(runs)
    assert (main.value, main.samples) == (4.0, [4.0, 2.0, 9.0])
    assert (main.baseline_value, main.baseline_samples) == (9.0, [8.0, 10.0, 9.0])
    assert main.ratio == pytest.approx(4.0 / 9.0)
    assert other.value == 2.0 and other.samples == [1.0, 3.0]
    assert "present in 2 of 3 repetitions" in other.notes and "present in" not in main.notes


def test_median_keeps_first_seen_order_and_even_count_median() -> None:
    runs = [[fig(1.0, name="z"), fig(5.0, name="a")], [fig(2.0, name="z"), fig(7.0, name="a")]]
    out = median_figures(runs)
    assert [f.name for f in out] == ["z", "a"]
    assert [f.value for f in out] == [1.5, 6.0]


@pytest.mark.parametrize(
    ("figure", "fragment"),
    [
        (fig(0.0), "finite positive"),
        (fig(math.nan), "finite positive"),
        (fig(1.0, -2.0), "baseline_value must be"),
        (Figure("b", "x", 1.0, "s", baseline_name="bare"), "come together"),
        (Figure("b", "x", 1.0, ""), "unit"),
        (Figure("b", "x", 1.0, "s", samples=[math.inf]), "samples must be finite"),
    ],
)
def test_malformed_figures_are_named(figure: Figure, fragment: str) -> None:
    problems = figure_problems(figure)
    assert any(fragment in p for p in problems), problems


def test_well_formed_figure_has_no_problems() -> None:
    assert figure_problems(fig(3.0, 6.0)) == []


# --- table and JSON ----------------------------------------------------------------------------------------


def test_table_rows_show_value_baseline_and_ratio() -> None:
    f = Figure("api", "p99 | conc 8", 250.0, "ms", "worker only", 125.0, higher_is_better=False, samples=[240, 250])
    table = render_table([f, fig(0.0123)])
    lines = table.splitlines()
    assert lines[0].startswith("| Benchmark | Figure | Value | Baseline | Ratio")
    assert len(lines) == 4
    assert "p99 \\| conc 8" in lines[2]  # a pipe in a name cannot break the table
    assert "| 250 ms | worker only: 125 ms | 2.00x | lower | 240, 250 |" in lines[2]
    assert "| 0.0123 images/s | - | - | higher | - |" in lines[3]


@pytest.mark.parametrize(("value", "text"), [(1234.5, "1,234"), (56.78, "56.8"), (5.678, "5.68"), (0.05678, "0.0568")])
def test_number_format(value: float, text: str) -> None:
    assert fmt(value) == text


def _doc(figures: list[Figure]):
    from bench.machine import machine_info

    run = {
        "started_utc": "2026-01-01T00:00:00+00:00",
        "finished_utc": "2026-01-01T00:01:00+00:00",
        "duration_s": 60.0,
        "quick": False,
        "repeats": 3,
        "budget_s": 540.0,
        "command": "python -m bench",
    }
    modules = [{"name": "b", "status": "ok", "repeats_requested": 3, "repeats_done": 3, "durations_s": [1, 2, 3]}]
    return build_doc(machine=machine_info(), run=run, modules=modules, figures=figures)


def test_results_round_trip_through_json_and_markdown(tmp_path: Path) -> None:
    figures = median_figures([[fig(4.0, 8.0)], [fig(6.0, 8.0)], [fig(5.0, 10.0)]])
    json_path, md_path = write_results(_doc(figures), tmp_path / "latest")
    back = load_results(json_path)
    assert back.figure_list() == figures
    assert back.figures[0].ratio == pytest.approx(5.0 / 8.0)
    assert back.machine.usable_cores >= 1 and back.machine.python
    assert back.machine.packages["onnxruntime"] and back.machine.packages["numpy"]
    md = md_path.read_text()
    assert "| b | images/s | 5.00 images/s | bare: 8.00 images/s | 0.62x | higher | 4.00, 6.00, 5.00 |" in md
    assert md == render_markdown(back)
    assert "Notes from the benchmarks" not in md  # none of these figures has notes
    assert not list(tmp_path.glob("*.tmp"))


def test_notes_are_listed_once_under_the_table() -> None:
    figures = [
        Figure("w", "a", 1.0, "s", notes="200 photos"),
        Figure("w", "b", 2.0, "s", notes="200 photos"),
        Figure("w", "c", 3.0, "s"),
    ]
    md = render_markdown(_doc(figures))
    assert "- w / a, w / b: 200 photos" in md
    assert md.count("200 photos") == 1


def test_schema_rejects_a_wrong_ratio_a_missing_field_and_unknown_keys(tmp_path: Path) -> None:
    json_path, _ = write_results(_doc([fig(4.0, 8.0)]), tmp_path / "r")
    good = json.loads(json_path.read_text())

    def reject(mutate) -> None:
        data = json.loads(json.dumps(good))
        mutate(data)
        json_path.write_text(json.dumps(data))
        with pytest.raises(ValidationError):
            load_results(json_path)

    reject(lambda d: d["figures"][0].update(ratio=2.0))
    reject(lambda d: d["figures"][0].update(baseline_value=None))
    reject(lambda d: d["machine"].pop("cpu_model"))
    reject(lambda d: d.update(surprise=1))
    reject(lambda d: d["modules"][0].update(status="great"))
    reject(lambda d: d.update(schema_version=2))


# --- running modules -------------------------------------------------------------------------------------------


def test_repetitions_run_in_fresh_processes_and_report_medians(env: dict[str, str]) -> None:
    out = run_module(f"{PKG}.varying", repeats=3, quick=True, budget_s=120, env=env)
    assert (out.status, out.repeats_done, len(out.durations_s)) == ("ok", 3, 3)
    rate, latency = out.figures
    assert (rate.value, rate.samples, rate.baseline_value, rate.ratio) == (3.0, [5.0, 1.0, 3.0], 6.0, 0.5)
    assert latency.samples == [20.0, 21.0, 22.0] and latency.notes == "quick"


@pytest.mark.parametrize(
    ("module", "fragment"), [("failing", "the model file is missing"), ("malformed", "finite positive")]
)
def test_a_broken_benchmark_is_reported_not_swallowed(env: dict[str, str], module: str, fragment: str) -> None:
    out = run_module(f"{PKG}.{module}", repeats=3, quick=True, budget_s=60, env=env)
    assert out.status == "failed" and out.repeats_done == 0 and not out.figures
    assert fragment in out.message


def test_an_overrunning_benchmark_is_killed_with_its_children(env: dict[str, str]) -> None:
    t0 = time.monotonic()
    out = run_module(f"{PKG}.sleeper", repeats=3, quick=True, budget_s=6, env=env)
    assert time.monotonic() - t0 < 20
    assert out.status == "timeout" and "budget" in out.message
    grandchild = int(Path(env["FAKEBENCH_PIDFILE"]).read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{grandchild}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{grandchild}").exists(), "the benchmark's own child process survived"


def test_repetitions_stop_when_the_next_would_not_fit(env: dict[str, str]) -> None:
    out = run_module(f"{PKG}.steady", repeats=5, quick=True, budget_s=5, env=env)
    assert out.status == "ok" and 1 <= out.repeats_done <= 2
    assert "budget" in out.message


def test_missing_modules_are_skipped_and_budget_is_shared(env: dict[str, str]) -> None:
    outs = run_all(["not_written_yet", f"{PKG}.varying"], repeats=1, quick=True, budget_s=100, env=env)
    assert [o.status for o in outs] == ["missing", "ok"]
    assert "bench/not_written_yet.py does not exist yet" in outs[0].message
    assert outs[1].budget_s is not None and outs[1].budget_s > 90  # the missing one took no share


def test_a_slow_first_module_may_use_the_budget_others_do_not_need(env: dict[str, str]) -> None:
    # Equal shares (2 s each) would kill the 2-second module; the reserve rule lets it run and leaves the
    # fast module its reserve. Three 2-second repetitions cannot fit in 5.5 s, so the slow one stops early.
    slow, fast = run_all(
        [f"{PKG}.steady", f"{PKG}.varying"], repeats=3, quick=True, budget_s=5.5, reserve_s=1.5, env=env
    )
    assert slow.status == "ok" and slow.budget_s is not None and slow.budget_s > 3.5
    assert fast.status == "ok" and fast.repeats_done >= 1
    assert slow.repeats_done < 3 and "budget" in slow.message


def test_cli_writes_both_files_and_prints_the_table(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = bench_main.main(["--only", f"{PKG}.varying", "--repeats", "3", "--out", str(tmp_path / "res")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| fake | images/s | 3.00 images/s | bare loop: 6.00 images/s | 0.50x |" in printed
    doc = load_results(tmp_path / "res.json")
    assert doc.run.repeats == 3 and doc.modules[0].repeats_done == 3
    assert (tmp_path / "res.md").read_text() == printed


def test_cli_fails_when_a_benchmark_fails_and_rejects_unknown_names(env: dict[str, str], tmp_path: Path) -> None:
    assert bench_main.main(["--only", f"{PKG}.failing", "--out", str(tmp_path / "res")]) == 1
    assert load_results(tmp_path / "res.json").modules[0].status == "failed"
    with pytest.raises(SystemExit) as exc:
        bench_main.main(["--only", "no_such_benchmark"])
    assert exc.value.code == 2


def test_cpu_shares_split_the_machine_time_between_two_readings() -> None:
    from bench.machine import cpu_shares, cpu_times

    #       user nice system idle iowait irq softirq steal
    before = [100, 0, 50, 800, 10, 0, 0, 40]
    after = [160, 0, 70, 900, 10, 0, 0, 60]  # 80 busy, 100 idle, 20 stolen of 200
    assert cpu_shares(before, after) == {"busy_pct": 40.0, "idle_pct": 50.0, "steal_pct": 10.0}
    assert cpu_shares(None, after) is None
    now = cpu_times()
    assert now is not None and len(now) >= 8 and cpu_shares(now, cpu_times()) is not None
