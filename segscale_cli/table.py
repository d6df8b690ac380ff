"""Jobs as CSV rows: one row per job, one group of columns per class the model measured; text cells that a
spreadsheet would run as formulas are neutralised (runtime/common/csvsafe.py)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO, Any

from runtime.common.csvsafe import neutralise_row

JOB_COLUMNS = (
    "batch_id",
    "job_id",
    "file_name",
    "status",
    "model",
    "model_version",
    "attempts",
    "width",
    "height",
    "mm_per_pixel",
    "created_at",
    "finished_at",
    "upload_to_result_ms",
    "inference_ms",
    "total_ms",
)
CLASS_FIELDS = ("pixels", "fraction", "components", "largest_component_pixels", "area_mm2")


def row(job: dict[str, Any]) -> dict[str, Any]:
    result = job.get("result") or {}
    timings = result.get("timings_ms") or {}
    created, finished = job.get("created_at"), job.get("finished_at")
    out: dict[str, Any] = {
        "batch_id": job.get("batch_id"),
        "job_id": job.get("job_id"),
        "file_name": job.get("file_name"),
        "status": job.get("status"),
        "model": result.get("model", job.get("model")),
        "model_version": result.get("model_version"),
        "attempts": job.get("attempts"),
        "width": result.get("width"),
        "height": result.get("height"),
        "mm_per_pixel": result.get("mm_per_pixel"),
        "created_at": created,
        "finished_at": finished,
        "upload_to_result_ms": finished - created if isinstance(created, int) and isinstance(finished, int) else None,
        "inference_ms": timings.get("inference"),
        "total_ms": timings.get("total"),
        "error": job.get("error"),
    }
    for name, measures in (result.get("classes") or {}).items():
        for field in CLASS_FIELDS:
            out[f"{name}_{field}"] = measures.get(field)
    return out


def write_csv(jobs: Iterable[dict[str, Any]], out: IO[str]) -> int:
    rows = [row(job) for job in jobs]
    class_columns = sorted({k for r in rows for k in r if k not in JOB_COLUMNS and k != "error"})
    writer = csv.DictWriter(out, fieldnames=[*JOB_COLUMNS, *class_columns, "error"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(neutralise_row(r) for r in rows)  # file names are the client's: never a formula
    return len(rows)
