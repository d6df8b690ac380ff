"""Finding the benchmark modules and running each several times inside a time budget.

`make bench` must finish in under 10 minutes on a 2-core machine whatever the benchmarks do, so the budget is
enforced, not hoped for: each module gets a share of what is left, a repetition that would not fit is not
started, and one that overruns is killed with its whole process group (benchmarks start servers and workers).

With ``against`` (``python -m bench --against REF``) every repetition runs twice, once from the working tree and
once from REF checked out in a temporary git worktree (same interpreter, same virtualenv), back to back and in
alternating order. On a shared machine the load changes from minute to minute; only figures measured side by
side, interleaved, can be divided by each other.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.aggregate import compare_figures, figure_problems, median_figures
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


def run_repetition(
    name: str, *, quick: bool, timeout_s: float, env: dict[str, str] | None = None, root: Path = REPO_ROOT
) -> list[Figure]:
    """Run one repetition of module ``name`` in a fresh process, in the source tree ``root``; its figures."""
    with tempfile.TemporaryDirectory(prefix="segscale-bench-") as tmp:
        out = Path(tmp) / "figures.json"
        cmd = [sys.executable, "-m", "bench.child", dotted(name), str(out), *(["--quick"] if quick else [])]
        proc = subprocess.Popen(
            cmd,
            cwd=root,
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


@dataclass(frozen=True)
class Side:
    """One source tree a repetition runs in: the working tree, or a git ref checked out elsewhere."""

    label: str
    root: Path
    env: dict[str, str] | None = None


class RefError(ValueError):
    """``--against`` names something git cannot turn into a commit, or the checkout failed."""


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RefError(f"git {' '.join(args)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip()


def resolve_ref(ref: str, root: Path = REPO_ROOT) -> str:
    """The full commit id ``ref`` names in the repository at ``root``; ``RefError`` if it names none."""
    try:
        return _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except RefError:
        raise RefError(f"--against {ref}: not a commit in {root}") from None


@contextlib.contextmanager
def ref_checkout(commit: str, root: Path = REPO_ROOT) -> Iterator[Path]:
    """``commit`` checked out in a temporary git worktree (detached), removed again however the run ends."""
    tmp = Path(tempfile.mkdtemp(prefix="segscale-bench-ref-"))
    tree = tmp / "tree"
    try:
        _git(root, "worktree", "add", "--detach", "--quiet", str(tree), commit)
        yield tree
    finally:
        with contextlib.suppress(RefError, subprocess.TimeoutExpired):
            _git(root, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(RefError, subprocess.TimeoutExpired):
            _git(root, "worktree", "prune")


def ref_env(env: dict[str, str] | None, tree_root: Path, ref_root: Path) -> dict[str, str]:
    """The environment for the ref's processes: its own source first on the path, the working tree's never."""
    base = dict(os.environ if env is None else env)
    keep = [p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != tree_root.resolve()]
    base["PYTHONPATH"] = os.pathsep.join([str(ref_root), *keep])
    return base


def module_in(root: Path, name: str) -> bool:
    """Whether the source tree at ``root`` has benchmark module ``name`` (a file check: nothing is imported)."""
    path = root.joinpath(*dotted(name).split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


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
    sides: list[Side] | None = None,
) -> list[ModuleOutcome]:
    """Every module once, then further repetitions round-robin while the next one still fits the budget.

    First repetitions come first so that every module reports something: module k may run until the budget
    minus ``reserve_s`` for each module still waiting for its first repetition (never less than an equal share
    of what is left). Later repetitions are interleaved across modules, so a neighbour's load on this shared
    machine spreads over all of them rather than skewing one, and a repetition is started only if the module's
    slowest one so far still fits in what is left.

    ``sides`` (default: the working tree alone) are the source trees each repetition runs in. With two, a
    repetition is a pair run back to back, first side first on even repetitions and last on odd ones, and each
    figure's baseline becomes the second side's value (``compare_figures``).
    """
    sides = sides or [Side("working tree", REPO_ROOT, env)]
    deadline = time.monotonic() + budget_s
    outcomes = [ModuleOutcome(name=n, status="ok", repeats_requested=repeats) for n in names]
    runs: dict[str, list[dict[str, list[Figure]]]] = {n: [] for n in names}
    stopped: set[str] = set()  # modules that get no further repetitions
    present = []
    for o in outcomes:
        if len(sides) == 1:  # importable from here (tests add packages of their own to the path)
            absent = [] if module_exists(o.name) else [sides[0].label]
        else:
            absent = [s.label for s in sides if not module_in(s.root, o.name)]
        if not absent:
            present.append(o)
            continue
        o.status, o.budget_s = "missing", 0.0
        where = "" if len(sides) == 1 else f" in {', '.join(absent)}"
        o.message = f"{dotted(o.name).replace('.', '/')}.py does not exist{where} yet; skipped"
        log(f"{o.name}: {o.message}")

    def attempt(o: ModuleOutcome, timeout_s: float) -> None:
        i = len(runs[o.name])
        log(f"{o.name}: repetition {i + 1}/{repeats} (may take {timeout_s:.0f} s)")
        t0 = time.monotonic()
        order = sides if i % 2 == 0 else sides[::-1]
        figures: dict[str, list[Figure]] = {}
        try:
            for k, side in enumerate(order):
                share = (timeout_s - (time.monotonic() - t0)) / (len(order) - k)
                if len(sides) > 1:
                    log(f"{o.name}: repetition {i + 1} in {side.label}")
                try:
                    figures[side.label] = run_repetition(
                        o.name, quick=quick, timeout_s=share, env=side.env, root=side.root
                    )
                except RepetitionError as exc:
                    where = f" ({side.label})" if len(sides) > 1 else ""
                    raise RepetitionError(exc.status, f"{exc}{where}") from exc
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
        if o.status != "ok":
            continue
        medians = [median_figures([r[s.label] for r in runs[o.name]]) for s in sides]
        o.figures = medians[0] if len(sides) == 1 else compare_figures(medians[0], medians[1], sides[1].label)
    return outcomes


def run_against(
    names: list[str],
    ref: str,
    *,
    repeats: int,
    quick: bool,
    budget_s: float,
    root: Path = REPO_ROOT,
    env: dict[str, str] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> tuple[list[ModuleOutcome], str]:
    """``run_all`` with every repetition run in the working tree at ``root`` and in ``ref``, interleaved.

    Returns the outcomes (each figure's baseline is ``ref``'s value) and the label the baselines carry.
    Raises ``RefError`` if ``ref`` is not a commit.
    """
    commit = resolve_ref(ref, root)
    label = f"{ref} ({commit[:10]})" if not commit.startswith(ref) else commit[:10]
    with ref_checkout(commit, root) as ref_root:
        log(f"{label} checked out in {ref_root}")
        sides = [Side("working tree", root, env), Side(label, ref_root, ref_env(env, root, ref_root))]
        outcomes = run_all(names, repeats=repeats, quick=quick, budget_s=budget_s, log=log, sides=sides)
    return outcomes, label
