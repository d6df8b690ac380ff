"""Deterministic S3 keys. The same job always maps to the same keys, so processing a job twice overwrites
rather than duplicates (docs/architecture.md D7c). User-supplied file names never enter a key."""

from __future__ import annotations

import re

UPLOADS_PREFIX = "uploads/"
RESULTS_PREFIX = "results/"
REPORTS_PREFIX = "reports/"
INBOX_PREFIX = "inbox/"  # the drop folder: inbox/<name>/<file> becomes a job of the batch of <name> (D10)

_ID = re.compile(r"^[0-9a-f]{32}$")
_EXT = re.compile(r"^[a-z0-9]{1,5}$")
_UPLOAD_KEY = re.compile(re.escape(UPLOADS_PREFIX) + r"(?P<batch>[0-9a-f]{32})/(?P<job>[0-9a-f]{32})\.[a-z0-9]{1,5}")


def _check_id(value: str, what: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError(f"{what} must be 32 lowercase hex characters, got {value!r}")
    return value


def upload_key(batch_id: str, job_id: str, ext: str) -> str:
    """Where the original image lives. ``ext`` comes from the sniffed format, not the file name."""
    if not _EXT.fullmatch(ext):
        raise ValueError(f"bad extension {ext!r}")
    return f"{UPLOADS_PREFIX}{_check_id(batch_id, 'batch_id')}/{_check_id(job_id, 'job_id')}.{ext}"


def parse_upload_key(key: str) -> tuple[str, str] | None:
    """``(batch_id, job_id)`` of a key ``upload_key`` could have made, else None."""
    match = _UPLOAD_KEY.fullmatch(key)
    return (match["batch"], match["job"]) if match else None


def result_prefix(batch_id: str, job_id: str) -> str:
    return f"{RESULTS_PREFIX}{_check_id(batch_id, 'batch_id')}/{_check_id(job_id, 'job_id')}/"


# The result files of a job and their formats: the mask is data (a lossless PNG), the overlay is a picture for
# people (a JPEG). The worker stores each with its content type; the API names the type from the key's extension
# (runtime/api/links.py), which keeps jobs finished when overlays were "overlay.png" served as PNG.
MASK_FILE = "mask.png"
MASK_CONTENT_TYPE = "image/png"
OVERLAY_FILE = "overlay.jpg"
OVERLAY_CONTENT_TYPE = "image/jpeg"


def mask_key(batch_id: str, job_id: str) -> str:
    return result_prefix(batch_id, job_id) + MASK_FILE


def overlay_key(batch_id: str, job_id: str) -> str:
    return result_prefix(batch_id, job_id) + OVERLAY_FILE


def report_prefix(name: str) -> str:
    """Prefix for an export or report run; ``name`` is a batch id or a time-range label chosen by our code."""
    if not re.fullmatch(r"[A-Za-z0-9_.=-]{1,128}", name):
        raise ValueError(f"bad report name {name!r}")
    return f"{REPORTS_PREFIX}{name}/"


def report_html_key(batch_id: str) -> str:
    """The batch's HTML report, written by the results task and linked by the API."""
    return report_prefix(_check_id(batch_id, "batch_id")) + "report.html"
