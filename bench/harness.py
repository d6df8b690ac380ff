"""Finding the benchmark modules and running each several times inside a time budget.

`make bench` must finish in under 10 minutes on a 2-core machine whatever the benchmarks do, so the budget is
enforced, not hoped for: each module gets a share of what is left, a repetition that would not fit is not
started, and one that overruns is killed with its whole process group (benchmarks start servers and workers).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.aggregate import figure_problems, median_figures
from bench.figures import Figure
from bench.report import ModuleStatus

# The benchmark modules the other issues define, in the order they run (cheapest first).
EXPECTED_MODULES = ("api_load", "worker_throughput", "e2e_local")
REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_TAIL_CHARS = 3000


class RepetitionError(Exception):
    def __init__(self, status: ModuleStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ModuleOutcome:
    name: str
    status: ModuleStatus
    repeats_requested: int
    repeats_done: int = 0
    durations_s: list[float] = field(default_factory=list)
    budget_s: float | None = None
    message: str = ""
    figures: list[Figure] = field(default_factory=list)

    def record(self) -> dict[str, object]:
        return {
            "name": self.name,
            "status": self.status,
            "repeats_requested": self.repeats_requested,
            "repeats_done": self.repeats_done,
            "durations_s": [round(d, 2) for d in self.durations_s],
            "budget_s": None if self.budget_s is None else round(self.budget_s, 1),
            "message": self.message,
        }


def dotted(name: str) -> str:
    """``api_load`` -> ``bench.api_load``; a dotted name is taken as given (tests run their own modules)."""
    return name if "." in name else f"bench.{name}"


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(dotted(name)) is not None
    except ModuleNotFoundError:  # the parent package does not exist
        return False


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the child and everything it started (it leads its own session); TERM first, then KILL."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_repetition(name: str, *, quick: bool, timeout_s: float, env: dict[str, str] | None = None) -> list[Figure]:
    """Run one repetition of module ``name`` in a fresh process and return its figures."""
    with tempfile.TemporaryDirectory(prefix="segscale-bench-") as tmp:
        out = Path(tmp) / "figures.json"
        cmd = [sys.executable, "-m", "bench.child", dotted(name), str(out), *(["--quick"] if quick else [])]
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=max(timeout_s, 0.1))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise RepetitionError("timeout", f"killed after {timeout_s:.0f} s (its time budget)") from None
        finally:
            if proc.poll() is None:
                _kill_group(proc)
        # The child may have left grandchildren behind even on success; they belong to its session.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        tail = (output or b"").decode(errors="replace")[-OUTPUT_TAIL_CHARS:]
        if proc.returncode != 0:
            raise RepetitionError("failed", f"exit status {proc.returncode}: {tail.strip()}")
        try:
            figures = [Figure.from_dict(d) for d in json.loads(out.read_text())]
        except (OSError, ValueError, TypeError) as exc:
            raise RepetitionError("failed", f"no readable figures ({exc}): {tail.strip()}") from exc
    if not figures:
        raise RepetitionError("failed", "returned no figures")
    problems = [p for f in figures for p in figure_problems(f)]
    if problems:
        raise RepetitionError("failed", "malformed figures: " + "; ".join(problems))
    return figures


def run_module(
    name: str,
    *,
    repeats: int,
    quick: bool,
    budget_s: float,
    env: dict[str, str] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> ModuleOutcome:
    """Up to ``repeats`` repetitions of one module within ``budget_s`` seconds; figures are their medians."""
    outcome = ModuleOutcome(name=name, status="ok", repeats_requested=repeats, budget_s=budget_s)
    if not module_exists(name):
        outcome.status = "missing"
        outcome.message = f"{dotted(name).replace('.', '/')}.py does not exist yet; skipped"
        log(f"{name}: {outcome.message}")
        return outcome
    started = time.monotonic()
    runs: list[list[Figure]] = []
    for i in range(repeats):
        remaining = budget_s - (time.monotonic() - started)
        if runs and max(outcome.durations_s) > remaining:
            outcome.message = f"stopped after {i} of {repeats} repetitions: the next would not fit the budget"
            break
        log(f"{name}: repetition {i + 1}/{repeats} (budget left {remaining:.0f} s)")
        t0 = time.monotonic()
        try:
            figures = run_repetition(name, quick=quick, timeout_s=remaining, env=env)
        except RepetitionError as exc:
            if not runs or exc.status == "failed":
                outcome.status = exc.status
                outcome.message = f"repetition {i + 1}: {exc}"
            else:  # a late repetition overran: keep what finished, say so
                outcome.message = f"repetition {i + 1}: {exc}; reporting the {len(runs)} that finished"
            log(f"{name}: {outcome.message}")
            break
        outcome.durations_s.append(time.monotonic() - t0)
        runs.append(figures)
    outcome.repeats_done = len(runs)
    if outcome.status == "ok":
        outcome.figures = median_figures(runs)
    return outcome


def run_all(
    names: list[str],
    *,
    repeats: int,
    quick: bool,
    budget_s: float,
    env: dict[str, str] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> list[ModuleOutcome]:
    """Run modules in order; each gets an equal share of the budget still left, so a fast one donates its time."""
    deadline = time.monotonic() + budget_s
    present = [n for n in names if module_exists(n)]
    outcomes: list[ModuleOutcome] = []
    for name in names:
        if name not in present:
            outcomes.append(run_module(name, repeats=repeats, quick=quick, budget_s=0, env=env, log=log))
            continue
        share = (deadline - time.monotonic()) / len(present)
        present.remove(name)
        outcomes.append(run_module(name, repeats=repeats, quick=quick, budget_s=max(share, 1.0), env=env, log=log))
    return outcomes
