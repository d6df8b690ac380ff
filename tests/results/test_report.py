"""The HTML report against a real moto server: it parses, counts are right, one overlay per succeeded job is
embedded, user text is escaped, and a missing overlay does not break it."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from runtime.common import keys
from runtime.common.aws import client
from runtime.common.cards import ClassSpec
from runtime.common.jobs import JobStore
from runtime.common.settings import Settings
from runtime.results.histogram import bin_counts, histogram_png
from runtime.results.report import build_report
from runtime.worker.render import overlay_jpeg
from tests.results.conftest import Clock, new_job, person_result


class Page(HTMLParser):
    """Collects every tag with its attributes, the text of each table cell and all text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.cells: list[str] = []
        self.text: list[str] = []
        self._in_cell = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_cell = tag == "td"
        if self._in_cell:
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_cell:
            self.cells[-1] += data

    def imgs(self, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == "img" and a.get("class") == cls]


def overlay(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    """An overlay as the worker writes it (a JPEG): a plain photo of ``color`` with nothing tinted."""
    picture = np.empty((height, width, 3), dtype=np.uint8)
    picture[:] = color
    person = (ClassSpec(id=1, name="person", color=(255, 0, 0)),)
    return overlay_jpeg(picture, np.zeros((height, width), dtype=np.uint8), person)


def succeed(
    store: JobStore, settings: Settings, batch: str, file_name: str, pixels: int, *, upload: bool = True
) -> str:
    job = new_job(store, batch, file_name=file_name, mm_per_pixel=0.5)
    store.claim(job, "w")
    overlay_key = keys.overlay_key(batch, job)
    if upload:
        client("s3", settings).put_object(
            Bucket=settings.bucket, Key=overlay_key, Body=overlay(640, 480, (pixels % 255, 0, 0))
        )
    result = person_result(pixels, mm_per_pixel=0.5, total_ms=float(pixels))
    store.complete(job, "w", result=result, mask_key=keys.mask_key(batch, job), overlay_key=overlay_key)
    return job


def test_report_renders_with_one_overlay_per_succeeded_job(
    rsettings: Settings, store: JobStore, clock: Clock, tmp_path: Path
) -> None:
    batch = uuid.uuid4().hex
    red = {}  # job id -> the red of its overlay
    ok = []
    for i, pixels in enumerate((100, 900, 400)):
        ok.append(succeed(store, rsettings, batch, f"img{i}.jpg", pixels))
        red[ok[-1]] = pixels % 255
    nasty = succeed(store, rsettings, batch, "<script>alert(1)</script>.jpg", 50)
    red[nasty] = 50
    failed = new_job(store, batch, file_name="broken.jpg")
    store.fail_queued(failed, "the image header is damaged: <b>bad</b>", error_class="corrupt_image")
    new_job(store, batch)  # still queued: counted, no overlay

    summary = build_report(rsettings, batch, out_path=tmp_path / "r.html", store=store)

    obj = client("s3", rsettings).get_object(Bucket=rsettings.bucket, Key=f"reports/{batch}/report.html")
    body = obj["Body"].read()
    assert obj["ContentType"].startswith("text/html") and body == (tmp_path / "r.html").read_bytes()
    page = Page(body.decode("utf-8"))
    overlays = page.imgs("overlay")
    assert sorted(a["data-job-id"] for a in overlays) == sorted([*ok, nasty])
    for a in overlays:
        assert a["src"].startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(a["src"].split(",", 1)[1]))) as thumb:
            assert max(thumb.size) == 256 and thumb.format == "JPEG"
            r, g, b = thumb.convert("RGB").getpixel((128, 96))
            assert abs(r - red[a["data-job-id"]]) <= 6 and g < 10 and b < 10  # the job's own overlay, decoded
    assert [a["data-class"] for a in page.imgs("histogram")] == ["person"]
    assert not any(t == "script" for t, _ in page.tags) and not any(t == "b" for t, _ in page.tags)
    cells = page.cells
    assert cells[cells.index("SUCCEEDED") + 1] == "4" and cells[cells.index("FAILED") + 1] == "1"
    assert cells[cells.index("QUEUED") + 1] == "1" and cells[cells.index("RUNNING") + 1] == "0"
    assert "the image header is damaged: <b>bad</b>" in cells
    slowest = [c for c in cells if c.startswith("img")]
    assert slowest[:3] == ["img1.jpg", "img2.jpg", "img0.jpg"]  # by total ms, slowest first
    assert summary.gallery == 4 and summary.gallery_missing == 0 and summary.jobs == 6
    assert summary.counts == {"FAILED": 1, "QUEUED": 1, "SUCCEEDED": 4}


def test_missing_overlay_and_gallery_cap(rsettings: Settings, store: JobStore, clock: Clock) -> None:
    batch = uuid.uuid4().hex
    shown = succeed(store, rsettings, batch, "a.jpg", 10, upload=False)
    clock.advance(1000)  # the gallery follows creation order
    for i in range(3):
        succeed(store, rsettings, batch, f"b{i}.jpg", 20)
    summary = build_report(rsettings, batch, max_gallery=1, store=store)
    body = client("s3", rsettings).get_object(Bucket=rsettings.bucket, Key=f"reports/{batch}/report.html")["Body"]
    page = Page(body.read().decode("utf-8"))
    assert page.imgs("overlay") == []
    missing = [a for t, a in page.tags if t == "div" and a.get("class") == "missing"]
    assert [a["data-job-id"] for a in missing] == [shown]
    assert "Showing 1 of 4 succeeded images; the export lists every job." in page.text
    assert "No job failed." in page.text  # an empty failure table would read as a rendering error
    assert summary.gallery == 0 and summary.gallery_missing == 1


def test_bad_batches_are_refused(rsettings: Settings, store: JobStore) -> None:
    with pytest.raises(LookupError, match="has no jobs"):
        build_report(rsettings, uuid.uuid4().hex, store=store)
    with pytest.raises(ValueError, match="not a batch id"):
        build_report(rsettings, "../../etc", store=store)


def test_histogram_bins_and_png() -> None:
    assert bin_counts([], 4) == ([], 0.0, 0.0)
    assert bin_counts([2.0, 2.0], 4) == ([2], 2.0, 2.0)
    assert bin_counts([0.0, 1.0, 2.0, 3.0, 4.0], 4) == ([1, 1, 1, 2], 0.0, 4.0)
    with pytest.raises(ValueError, match="finite"):
        bin_counts([1.0, float("nan"), float("inf")], 4)
    with Image.open(io.BytesIO(histogram_png([1.0, 2.0, 2.5], title="t", xlabel="x"))) as img:
        assert img.format == "PNG" and img.size == (520, 260)
        assert img.convert("RGB").getpixel((55, 200)) == (66, 133, 244)  # a bar is drawn


def test_cli_report_writes_html_and_refuses_an_empty_batch(
    rsettings: Settings, store: JobStore, clock: Clock, resources: Any, tmp_path: Path
) -> None:
    batch = uuid.uuid4().hex
    job = succeed(store, rsettings, batch, "a.jpg", 10)
    env = {**os.environ, **resources.env()}
    cmd = [sys.executable, "-m", "runtime.results", "report", "--batch", batch, "--out", str(tmp_path / "r.html")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout)["counts"] == {"SUCCEEDED": 1}
    assert [a["data-job-id"] for a in Page((tmp_path / "r.html").read_text()).imgs("overlay")] == [job]
    empty = subprocess.run(
        [sys.executable, "-m", "runtime.results", "report", "--batch", uuid.uuid4().hex],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert empty.returncode == 1 and "has no jobs" in empty.stderr
