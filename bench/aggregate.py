"""Turning repeated runs of a benchmark into one figure each: the median, with every sample kept.

The median, not the mean, because this machine is shared: one repetition slowed by a neighbour should not move
the reported figure, but it stays visible in ``samples``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace

from bench.figures import Figure


def figure_problems(fig: Figure) -> list[str]:
    """Why a figure is not well-formed (empty when it is): what the harness and the smoke test refuse."""
    where = f"{fig.benchmark}/{fig.name}"
    problems: list[str] = []
    if not fig.benchmark or not fig.name:
        problems.append(f"{where}: benchmark and name must be set")
    if not fig.unit:
        problems.append(f"{where}: unit must be set")
    if not isinstance(fig.value, int | float) or not math.isfinite(fig.value) or fig.value <= 0:
        problems.append(f"{where}: value must be a finite positive number, got {fig.value!r}")
    if (fig.baseline_name is None) != (fig.baseline_value is None):
        problems.append(f"{where}: baseline_name and baseline_value come together")
    if fig.baseline_value is not None:
        if not math.isfinite(fig.baseline_value) or fig.baseline_value <= 0:
            problems.append(f"{where}: baseline_value must be a finite positive number, got {fig.baseline_value!r}")
        elif fig.ratio is None or not math.isfinite(fig.ratio):
            problems.append(f"{where}: ratio could not be computed")
    for s in [*fig.samples, *fig.baseline_samples]:
        if not math.isfinite(s):
            problems.append(f"{where}: samples must be finite, got {s!r}")
            break
    return problems


def median_figures(runs: list[list[Figure]]) -> list[Figure]:
    """One figure per (benchmark, name) across ``runs`` (one list per repetition), in first-seen order.

    ``value`` and ``baseline_value`` become medians; ``samples``/``baseline_samples`` list the per-repetition
    values. A figure missing from some repetitions is aggregated over those that produced it, and says so.
    """
    order: list[tuple[str, str]] = []
    groups: dict[tuple[str, str], list[Figure]] = {}
    for run in runs:
        for fig in run:
            key = (fig.benchmark, fig.name)
            if key not in groups:
                order.append(key)
                groups[key] = []
            groups[key].append(fig)

    out: list[Figure] = []
    for key in order:
        figs = groups[key]
        first = figs[0]
        values = [float(f.value) for f in figs]
        baselines = [float(f.baseline_value) for f in figs if f.baseline_value is not None]
        notes = first.notes
        if len(figs) < len(runs):
            extra = f"present in {len(figs)} of {len(runs)} repetitions"
            notes = f"{notes}; {extra}" if notes else extra
        out.append(
            replace(
                first,
                value=statistics.median(values),
                samples=values,
                baseline_value=statistics.median(baselines) if baselines else None,
                baseline_samples=baselines,
                baseline_name=next((f.baseline_name for f in figs if f.baseline_value is not None), None),
                notes=notes,
            )
        )
    return out


def compare_figures(tree: list[Figure], ref: list[Figure], ref_label: str) -> list[Figure]:
    """The working tree's figures with the same-named figures of another git ref as their baselines.

    Each figure keeps its own unit and direction; its baseline becomes the ref's median (and the ref's samples),
    so ``ratio`` is this tree over the ref. A figure the ref does not report (a benchmark added since) stays
    without a baseline and says so; one only the ref reports is dropped (nothing here to compare it with).
    """
    by_key = {(f.benchmark, f.name): f for f in ref}
    out: list[Figure] = []
    for f in tree:
        other = by_key.get((f.benchmark, f.name))
        if other is None:
            note = f"not reported by {ref_label}"
            out.append(
                replace(f, baseline_name=None, baseline_value=None, baseline_samples=[], notes=_join(f.notes, note))
            )
            continue
        notes = f.notes
        if f.ratio is not None:  # the tree's own same-run baseline is replaced below: keep what it said
            notes = _join(notes, f"this tree vs {f.baseline_name}: {f.ratio:.2f}x")
        if len(f.samples) == len(other.samples) > 1 and all(other.samples):
            # Repetition k of both sides ran back to back: their ratio is the least disturbed by a neighbour's
            # load, which on a shared machine can change between one side's run and the next pair's.
            pairs = ", ".join(f"{a / b:.2f}x" for a, b in zip(f.samples, other.samples, strict=True))
            notes = _join(notes, f"ratio per repetition, {ref_label}: {pairs}")
        out.append(
            replace(
                f,
                notes=notes,
                baseline_name=ref_label,
                baseline_value=other.value,
                baseline_samples=list(other.samples),
            )
        )
    return out


def _join(notes: str, extra: str) -> str:
    return f"{notes}; {extra}" if notes else extra
