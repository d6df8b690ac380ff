"""An HTML report for one batch, written to ``reports/<batch>/report.html``.

The report is one self-contained file: histograms and overlay thumbnails are embedded as ``data:`` URIs, so it
opens from S3 (a presigned link, the console, a download) without further permissions and never expires, unlike
presigned image links. The gallery is capped (``max_gallery``) so the file stays small for big batches; the
export has every job. User-supplied text (file names, error messages) is HTML-escaped.
"""

from __future__ import annotations

import base64
import heapq
import html
import io
import time
from array import array
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from PIL import Image, UnidentifiedImageError

from runtime.common import keys
from runtime.common.aws import client
from runtime.common.jobs import Job, JobStatus, JobStore
from runtime.common.settings import Settings
from runtime.results.histogram import histogram_png

DEFAULT_MAX_GALLERY = 200
DEFAULT_SLOWEST = 10
THUMBNAIL_PX = 256
MAX_REASONS = 50


@dataclass
class ReportSummary:
    batch_id: str
    s3_uri: str
    jobs: int
    counts: dict[str, int]
    gallery: int
    gallery_missing: int
    bytes: int
    local_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _GalleryItem:
    job_id: str
    file_name: str
    overlay_key: str
    classes: dict[str, Any]
    thumbnail: str | None = None  # data: URI


@dataclass
class _Stats:
    """Everything the report needs, gathered in one streaming pass over the batch."""

    max_gallery: int
    slowest_n: int
    jobs: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    areas_mm2: dict[str, array] = field(default_factory=dict)
    fractions: dict[str, array] = field(default_factory=dict)
    slowest: list[tuple[float, str, str]] = field(default_factory=list)  # min-heap of (ms, job_id, file_name)
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    gallery: list[_GalleryItem] = field(default_factory=list)
    succeeded_without_overlay: int = 0

    def add(self, job: Job) -> None:
        self.jobs += 1
        status = str(job.get("status"))
        self.counts[status] += 1
        if status == JobStatus.FAILED:
            reason = str(job.get("error") or "unknown")[:300]
            self.reasons[(str(job.get("error_class") or ""), reason)] += 1
        if status != JobStatus.SUCCEEDED:
            return
        result = job.get("result") or {}
        classes = result.get("classes") or {}
        for name, m in classes.items():
            if m.get("area_mm2") is not None:
                self.areas_mm2.setdefault(name, array("d")).append(float(m["area_mm2"]))
            if m.get("fraction") is not None:
                self.fractions.setdefault(name, array("d")).append(float(m["fraction"]))
        total = (result.get("timings_ms") or {}).get("total")
        if total is None and job.get("started_at") is not None and job.get("finished_at") is not None:
            total = job["finished_at"] - job["started_at"]
        if total is not None:
            entry = (float(total), job["job_id"], str(job.get("file_name", "")))
            if len(self.slowest) < self.slowest_n:
                heapq.heappush(self.slowest, entry)
            else:
                heapq.heappushpop(self.slowest, entry)
        if not job.get("overlay_key"):
            self.succeeded_without_overlay += 1
        elif len(self.gallery) < self.max_gallery:
            self.gallery.append(_GalleryItem(job["job_id"], str(job.get("file_name", "")), job["overlay_key"], classes))


def thumbnail_data_uri(data: bytes, size: int = THUMBNAIL_PX) -> str:
    """A small JPEG of an overlay (a JPEG; a PNG for jobs from before), as a data: URI of a few KB."""
    with Image.open(io.BytesIO(data)) as img:
        img.thumbnail((size, size))
        rgb = img.convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fetch_thumbnail(s3: Any, bucket: str, item: _GalleryItem) -> None:
    try:
        data = s3.get_object(Bucket=bucket, Key=item.overlay_key)["Body"].read()
        item.thumbnail = thumbnail_data_uri(data)
    except (ClientError, UnidentifiedImageError, Image.DecompressionBombError, OSError):
        item.thumbnail = None  # shown as "overlay not available"; the report still renders


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;width:260px;font-size:.8rem}
figure img{max-width:256px;max-height:256px;display:block}
.missing{width:256px;height:96px;background:#eee;display:flex;align-items:center;justify-content:center}
"""


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _histograms(stats: _Stats) -> str:
    parts = []
    for name in sorted(set(stats.areas_mm2) | set(stats.fractions)):
        if name in stats.areas_mm2:
            values, label = list(stats.areas_mm2[name]), "area (mm²)"
        else:
            values, label = [100 * f for f in stats.fractions[name]], "area (% of image)"
        png = histogram_png(values, title=f"{name}: {len(values)} images", xlabel=label)
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        parts.append(f'<img class="histogram" data-class="{_e(name)}" alt="{_e(name)} {_e(label)}" src="{uri}">')
    return "".join(parts) or "<p>No measurements yet.</p>"


def render_html(batch_id: str, stats: _Stats, *, generated_at_ms: int) -> str:
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(generated_at_ms / 1000))
    counts = [[s, stats.counts.get(str(s), 0)] for s in JobStatus]
    slowest = [[f, j, f"{ms:.0f}"] for ms, j, f in sorted(stats.slowest, reverse=True)]
    reasons = [[n, c, r] for (c, r), n in stats.reasons.most_common(MAX_REASONS)]
    failures = _table(["jobs", "class", "reason"], reasons) if reasons else "<p>No job failed.</p>"
    figures = []
    for item in stats.gallery:
        caption = "; ".join(
            f"{name}: {(m.get('fraction') or 0) * 100:.1f}%"
            + (f", {m['area_mm2']:.4g} mm²" if m.get("area_mm2") is not None else "")
            for name, m in sorted(item.classes.items())
        )
        if item.thumbnail:
            picture = (
                f'<img class="overlay" data-job-id="{_e(item.job_id)}" alt="overlay of {_e(item.file_name)}" '
                f'src="{item.thumbnail}">'
            )
        else:
            picture = f'<div class="missing" data-job-id="{_e(item.job_id)}">overlay not available</div>'
        figures.append(
            f"<figure>{picture}<figcaption><strong>{_e(item.file_name)}</strong><br>{_e(caption)}</figcaption></figure>"
        )
    succeeded = stats.counts.get(JobStatus.SUCCEEDED, 0)
    note = ""
    if succeeded > len(stats.gallery):
        note = f"<p>Showing {len(stats.gallery)} of {succeeded} succeeded images; the export lists every job.</p>"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>segscale batch {_e(batch_id)}</title>'
        f"<style>{_CSS}</style></head><body>"
        f"<h1>Batch {_e(batch_id)}</h1><p>{stats.jobs} jobs; generated {_e(generated)}.</p>"
        f"<h2>Status</h2>{_table(['status', 'jobs'], counts)}"
        f"<h2>Area per class</h2>{_histograms(stats)}"
        f"<h2>Slowest images</h2>{_table(['file', 'job id', 'total ms'], slowest)}"
        f"<h2>Failure reasons</h2>{failures}"
        f'<h2>Gallery</h2>{note}<div class="gallery">{"".join(figures)}</div>'
        "</body></html>\n"
    )


def build_report(
    settings: Settings,
    batch_id: str,
    *,
    out_path: Path | None = None,
    max_gallery: int = DEFAULT_MAX_GALLERY,
    slowest: int = DEFAULT_SLOWEST,
    store: JobStore | None = None,
    s3: Any | None = None,
) -> ReportSummary:
    """Read the batch once, fetch the gallery thumbnails in parallel, write the HTML to S3 (and ``out_path``)."""
    try:
        key = keys.report_html_key(batch_id)
    except ValueError as exc:
        raise ValueError(f"{batch_id!r} is not a batch id we could have issued") from exc
    store = store or JobStore.from_settings(settings)
    s3 = s3 or client("s3", settings)
    stats = _Stats(max_gallery=max_gallery, slowest_n=slowest)
    for job in store.iter_batch(batch_id):
        stats.add(job)
    if stats.jobs == 0:
        raise LookupError(f"batch {batch_id} has no jobs")
    with ThreadPoolExecutor(max_workers=settings.worker_io_threads) as pool:
        list(pool.map(lambda item: _fetch_thumbnail(s3, settings.bucket, item), stats.gallery))
    page = render_html(batch_id, stats, generated_at_ms=store.clock()).encode("utf-8")
    s3.put_object(Bucket=settings.bucket, Key=key, Body=page, ContentType="text/html; charset=utf-8")
    if out_path is not None:
        out_path.write_bytes(page)
    return ReportSummary(
        batch_id=batch_id,
        s3_uri=f"s3://{settings.bucket}/{key}",
        jobs=stats.jobs,
        counts={k: v for k, v in sorted(stats.counts.items())},
        gallery=sum(1 for i in stats.gallery if i.thumbnail),
        gallery_missing=sum(1 for i in stats.gallery if not i.thumbnail) + stats.succeeded_without_overlay,
        bytes=len(page),
        local_path=str(out_path) if out_path else None,
    )
