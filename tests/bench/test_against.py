"""`python -m bench --against REF`: the same benchmark from the working tree and from another git ref, interleaved,
each figure's baseline being the ref's value. Runs on a small git repository the test builds, whose benchmark
reports a different speed at each commit and in its uncommitted working tree."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from bench import __main__ as bench_main
from bench.harness import REPO_ROOT, RefError, run_against

BENCH = """
    import os
    from pathlib import Path
    from bench.figures import Figure
    SPEED = {speed}
    def run(*, quick=False):
        with Path(os.environ["ABFAKE_LOG"]).open("a") as log:
            log.write(f"{{SPEED}}\\n")
        figures = [
            Figure("abfake", "images/s", SPEED, "images/s", "bare loop", 2 * SPEED),
            Figure("abfake", "start-up", 12.0 / SPEED, "ms", higher_is_better=False),
        ]
        if SPEED > 2:
            figures.append(Figure("abfake", "new figure", 1.0, "s"))
        return figures
"""


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout


def _write_bench(repo: Path, speed: float) -> None:
    (repo / "bench" / "abfake.py").write_text(textwrap.dedent(BENCH.format(speed=speed)))


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """Commit 1: speed 2; commit 2: speed 3; working tree (uncommitted): speed 6."""
    root = tmp_path / "repo"
    (root / "bench").mkdir(parents=True)
    for name in ("__init__.py", "child.py", "figures.py"):  # what a benchmark child process needs
        shutil.copy(REPO_ROOT / "bench" / name, root / "bench" / name)
    _git(root, "init", "--quiet")
    _write_bench(root, 2.0)
    _git(root, "add", ".")
    _git(root, "commit", "--quiet", "-m", "speed 2")
    _write_bench(root, 3.0)
    _git(root, "commit", "--quiet", "-am", "speed 3")
    _write_bench(root, 6.0)
    return root


def test_figures_compare_the_working_tree_with_the_ref_interleaved(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "order.log"
    monkeypatch.setenv("ABFAKE_LOG", str(log))
    (outcome,), label = run_against(["abfake"], "HEAD~1", repeats=3, quick=True, budget_s=120, root=repo)
    assert outcome.status == "ok" and outcome.repeats_done == 3, outcome.message
    commit = _git(repo, "rev-parse", "HEAD~1").strip()
    assert label == f"HEAD~1 ({commit[:10]})"
    # Pairs back to back, the order flipped every repetition so neither side always runs on a warmer machine.
    assert log.read_text().split() == ["6.0", "2.0", "2.0", "6.0", "6.0", "2.0"]
    rate, startup, new = outcome.figures
    assert (rate.value, rate.baseline_value, rate.baseline_name) == (6.0, 2.0, label)
    assert rate.samples == [6.0, 6.0, 6.0] and rate.baseline_samples == [2.0, 2.0, 2.0]
    assert rate.ratio == pytest.approx(3.0)  # the working tree, not HEAD (speed 3), was measured
    assert "this tree vs bare loop: 0.50x" in rate.notes  # the tree's own baseline is not lost
    assert f"ratio per repetition, {label}: 3.00x, 3.00x, 3.00x" in rate.notes
    assert startup.ratio == pytest.approx(1 / 3) and not startup.higher_is_better
    assert new.baseline_value is None and f"not reported by {label}" in new.notes
    # The temporary worktree is gone and git no longer lists it.
    assert _git(repo, "worktree", "list").count("\n") == 1


def test_a_name_that_is_not_a_commit_is_refused(repo: Path) -> None:
    with pytest.raises(RefError, match="--against no-such-branch: not a commit"):
        run_against(["abfake"], "no-such-branch", repeats=1, quick=True, budget_s=30, root=repo)
    with pytest.raises(SystemExit) as exc:
        bench_main.main(["--only", "worker_throughput", "--against", "no-such-branch-anywhere"])
    assert exc.value.code == 2


def test_a_benchmark_missing_from_the_ref_is_reported_missing(repo: Path, tmp_path: Path) -> None:
    (repo / "bench" / "newbench.py").write_text((repo / "bench" / "abfake.py").read_text())  # not committed
    (outcome,), _ = run_against(["newbench"], "HEAD", repeats=1, quick=True, budget_s=60, root=repo)
    assert outcome.status == "missing" and "does not exist in HEAD" in outcome.message
