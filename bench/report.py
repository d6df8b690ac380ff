"""The results file (`bench/results/latest.json`), its schema, and the markdown table made from it.

The JSON is the record (docs/performance.md and the cost calculator read it), so it is validated on write and
on read: a results file that does not match the schema is an error, not a silently wrong cost figure.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bench.figures import Figure

SCHEMA_VERSION = 1
ModuleStatus = Literal["ok", "failed", "timeout", "missing"]


class FigureRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    benchmark: str = Field(min_length=1)
    name: str = Field(min_length=1)
    value: float
    unit: str = Field(min_length=1)
    baseline_name: str | None = None
    baseline_value: float | None = None
    higher_is_better: bool = True
    samples: list[float] = Field(default_factory=list)
    notes: str = ""
    baseline_samples: list[float] = Field(default_factory=list)
    ratio: float | None = None

    @model_validator(mode="after")
    def _ratio_matches(self) -> FigureRecord:
        if (self.baseline_name is None) != (self.baseline_value is None):
            raise ValueError(f"{self.name}: baseline_name and baseline_value come together")
        expected = None if self.baseline_value in (None, 0) else self.value / self.baseline_value  # type: ignore[operator]
        if (expected is None) != (self.ratio is None) or (
            expected is not None and not math.isclose(expected, self.ratio or 0.0, rel_tol=1e-9)
        ):
            raise ValueError(f"{self.name}: ratio {self.ratio} is not value / baseline_value ({expected})")
        return self

    def to_figure(self) -> Figure:
        return Figure.from_dict(self.model_dump())


class ModuleRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    status: ModuleStatus
    repeats_requested: int = Field(ge=0)
    repeats_done: int = Field(ge=0)
    durations_s: list[float] = Field(default_factory=list)
    budget_s: float | None = None
    message: str = ""


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    started_utc: str
    finished_utc: str
    duration_s: float = Field(ge=0)
    quick: bool
    repeats: int = Field(ge=1)
    budget_s: float = Field(gt=0)
    command: str


class MachineRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    cpu_model: str
    logical_cores: int | None
    usable_cores: int
    memory_gib: float | None
    python: str
    packages: dict[str, str | None]
    git: dict[str, Any]
    date_utc: str


class ResultsDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    machine: MachineRecord
    run: RunRecord
    modules: list[ModuleRecord]
    figures: list[FigureRecord]

    def figure_list(self) -> list[Figure]:
        return [f.to_figure() for f in self.figures]


def build_doc(
    *, machine: dict[str, Any], run: dict[str, Any], modules: list[dict[str, Any]], figures: list[Figure]
) -> ResultsDoc:
    return ResultsDoc.model_validate(
        {"machine": machine, "run": run, "modules": modules, "figures": [f.to_dict() for f in figures]}
    )


def fmt(value: float) -> str:
    """Three significant figures without scientific notation for the magnitudes benchmarks produce."""
    a = abs(value)
    if a >= 100:
        return f"{value:,.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(figures: list[Figure]) -> str:
    lines = [
        "| Benchmark | Figure | Value | Baseline | Ratio | Better | Samples |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for f in figures:
        baseline = "-" if f.baseline_value is None else f"{f.baseline_name}: {fmt(f.baseline_value)} {f.unit}"
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}x"
        samples = ", ".join(fmt(s) for s in f.samples) or "-"
        row = [
            f.benchmark,
            f.name,
            f"{fmt(f.value)} {f.unit}",
            baseline,
            ratio,
            "higher" if f.higher_is_better else "lower",
            samples,
        ]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


def _notes(figures: list[Figure]) -> list[str]:
    """What the benchmarks say about their own figures (input sizes, caveats), each distinct note once."""
    seen: dict[str, list[str]] = {}
    for f in figures:
        if f.notes:
            seen.setdefault(f.notes, []).append(f"{f.benchmark} / {f.name}")
    if not seen:
        return []
    lines = ["Notes from the benchmarks:", ""]
    lines += [f"- {', '.join(names)}: {_cell(note)}" for note, names in seen.items()]
    return [*lines, ""]


def render_markdown(doc: ResultsDoc) -> str:
    m, r = doc.machine, doc.run
    commit = (m.git.get("commit") or "unknown")[:12] + (" (uncommitted changes)" if m.git.get("dirty") else "")
    limit = getattr(m, "cgroup_cpu_limit", None)
    cores = f"{m.usable_cores} usable of {m.logical_cores} logical" + (f", cgroup limit {limit}" if limit else "")
    load = getattr(m, "load_average_at_start", None)
    lines = [
        "# Benchmark results",
        "",
        f"- Run: {r.started_utc} to {r.finished_utc} ({r.duration_s:.0f} s), `{r.command}`, "
        f"{'quick (smoke) mode, ' if r.quick else ''}up to {r.repeats} repetitions per benchmark, "
        f"value = median of the repetitions",
        f"- Machine: {m.cpu_model}, {cores} cores, {m.memory_gib} GiB memory, Python {m.python}"
        + (f", load average at start {load}" if load else ""),
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in m.packages.items() if v),
        f"- Commit: {commit}",
        "",
        render_table(doc.figure_list()) if doc.figures else "_No figures: no benchmark ran._",
        "",
        "Ratio = value / baseline, both measured in the same repetition set. "
        "'Better' says which direction is an improvement.",
        "",
        *_notes(doc.figure_list()),
        "| Benchmark module | Status | Repetitions | Seconds per repetition | Message |",
        "|---|---|---:|---|---|",
    ]
    for mod in doc.modules:
        durations = ", ".join(f"{d:.1f}" for d in mod.durations_s) or "-"
        lines.append(
            f"| {mod.name} | {mod.status} | {mod.repeats_done}/{mod.repeats_requested} | {durations} | "
            f"{_cell(mod.message) or '-'} |"
        )
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_results(doc: ResultsDoc, stem: Path) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md``; each replaces the old file only once fully written."""
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    _atomic_write(json_path, json.dumps(doc.model_dump(mode="json"), indent=2) + "\n")
    _atomic_write(md_path, render_markdown(doc))
    return json_path, md_path


def write_standalone(stem: Path, result: dict[str, Any], text: str) -> None:
    """A standalone benchmark's (``python -m bench.<name>``) result: ``<stem>.json``, ``<stem>.md``, and the text
    on stdout."""
    _atomic_write(stem.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    _atomic_write(stem.with_suffix(".md"), text)
    print(text)


def load_results(path: Path) -> ResultsDoc:
    """Read and validate a results file; raises ``ValueError`` (pydantic's ValidationError is one) if malformed."""
    return ResultsDoc.model_validate_json(path.read_text())
