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
# Time kept back for each module still waiting for its first repetition while an earlier one runs.
DEFAULT_RESERVE_S = 60.0


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
    return run_all([name], repeats=repeats, quick=quick, budget_s=budget_s, env=env, log=log)[0]


def run_all(
    names: list[str],
    *,
    repeats: int,
    quick: bool,
    budget_s: float,
    reserve_s: float = DEFAULT_RESERVE_S,
    env: dict[str, str] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> list[ModuleOutcome]:
    """Every module once, then further repetitions round-robin while the next one still fits the budget.

    First repetitions come first so that every module reports something: module k may run until the budget
    minus ``reserve_s`` for each module still waiting for its first repetition (never less than an equal share
    of what is left). Later repetitions are interleaved across modules, so a neighbour's load on this shared
    machine spreads over all of them rather than skewing one, and a repetition is started only if the module's
    slowest one so far still fits in what is left.
    """
    deadline = time.monotonic() + budget_s
    outcomes = [ModuleOutcome(name=n, status="ok", repeats_requested=repeats) for n in names]
    runs: dict[str, list[list[Figure]]] = {n: [] for n in names}
    stopped: set[str] = set()  # modules that get no further repetitions
    present = []
    for o in outcomes:
        if module_exists(o.name):
            present.append(o)
        else:
            o.status, o.budget_s = "missing", 0.0
            o.message = f"{dotted(o.name).replace('.', '/')}.py does not exist yet; skipped"
            log(f"{o.name}: {o.message}")

    def attempt(o: ModuleOutcome, timeout_s: float) -> None:
        i = len(runs[o.name])
        log(f"{o.name}: repetition {i + 1}/{repeats} (may take {timeout_s:.0f} s)")
        t0 = time.monotonic()
        try:
            figures = run_repetition(o.name, quick=quick, timeout_s=timeout_s, env=env)
        except RepetitionError as exc:
            if i == 0 or exc.status == "failed":
                o.status, o.message = exc.status, f"repetition {i + 1}: {exc}"
            else:  # a late repetition overran: keep what finished, say so
                o.message = f"repetition {i + 1}: {exc}; reporting the {i} that finished"
            stopped.add(o.name)
            log(f"{o.name}: {o.message}")
            return
        o.durations_s.append(time.monotonic() - t0)
        runs[o.name].append(figures)

    for k, o in enumerate(present):
        remaining = deadline - time.monotonic()
        waiting = len(present) - k - 1
        o.budget_s = max(remaining - waiting * reserve_s, remaining / (waiting + 1), 1.0)
        attempt(o, o.budget_s)

    for _round in range(1, repeats):
        for o in present:
            if o.name in stopped:
                continue
            remaining = deadline - time.monotonic()
            if max(o.durations_s) > remaining:
                done = len(runs[o.name])
                o.message = f"stopped after {done} of {repeats} repetitions: the next would not fit the budget"
                log(f"{o.name}: {o.message}")
                stopped.add(o.name)
                continue
            attempt(o, remaining)

    for o in present:
        o.repeats_done = len(runs[o.name])
        if o.status == "ok":
            o.figures = median_figures(runs[o.name])
    return outcomes
