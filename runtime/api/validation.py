"""Checks on user input that several routes share: images (sniffed bytes), mm_per_pixel, idempotency keys, ids."""

from __future__ import annotations

import math
import re

from runtime.api.problems import ApiProblem, FileProblem
from runtime.common import imageinfo

ID_PATTERN = r"^[0-9a-f]{32}$"
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_ID = re.compile(ID_PATTERN)
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)

# Calibration bounds: every value in this range survives DynamoDB's number type (1e-130..1e125, 38 digits) and the
# worker's area arithmetic (pixels x mm_per_pixel^2 for 64 MP images) with room to spare; nothing real is outside
# it (1 nm to 1 km per pixel).
MM_PER_PIXEL_MIN = 1e-9
MM_PER_PIXEL_MAX = 1e6

IMAGE_ERROR_STATUS: dict[type[imageinfo.ImageError], int] = {
    imageinfo.NotAnImage: 415,
    imageinfo.TooManyPixels: 413,
    imageinfo.CorruptImage: 422,
    imageinfo.EmptyImage: 422,
}


def image_error_status(exc: imageinfo.ImageError) -> int:
    return IMAGE_ERROR_STATUS.get(type(exc), 422)


def file_problem(index: int, file_name: str, exc: imageinfo.ImageError) -> FileProblem:
    return FileProblem(index=index, file_name=file_name, type=exc.kind, status=image_error_status(exc), detail=str(exc))


def refuse_files(problems: list[FileProblem]) -> ApiProblem:
    """One answer for a request with bad files: the shared status if they agree, else 422; nothing is stored."""
    statuses = {p.status for p in problems}
    status = statuses.pop() if len(statuses) == 1 else 422
    kind = problems[0].type if len({p.type for p in problems}) == 1 else "invalid_files"
    names = ", ".join(f"{p.file_name!r} ({p.detail})" for p in problems[:5])
    more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
    return ApiProblem(
        status, kind, f"{len(problems)} file(s) refused, nothing was stored: {names}{more}", errors=problems
    )


def parse_mm_per_pixel(raw: str | float | None) -> float | None:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise ApiProblem(422, "invalid_mm_per_pixel", f"mm_per_pixel {str(raw)[:32]!r} is not a number") from exc
    if not (math.isfinite(value) and MM_PER_PIXEL_MIN <= value <= MM_PER_PIXEL_MAX):
        raise ApiProblem(
            422,
            "invalid_mm_per_pixel",
            f"mm_per_pixel must be a number from {MM_PER_PIXEL_MIN:g} to {MM_PER_PIXEL_MAX:g}, got {raw!s:.32}",
        )
    return value


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiProblem(422, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters")
    return key


def parse_batch_id(raw: str | None) -> str | None:
    """A client-chosen batch id lets many requests fill one batch; the same shape as the ids the API makes, so
    it can never reach an S3 key or a DynamoDB key in any other form."""
    if raw is None:
        return None
    if not is_id(raw):
        raise ApiProblem(
            422, "invalid_batch_id", f"batch_id must be 32 lowercase hex (e.g. uuid4().hex), got {raw[:40]!r}"
        )
    return raw


BOOLEAN_SPELLINGS = {"true": True, "false": False}  # a boolean in a form field or a query, as OpenAPI writes it


def parse_boolean(raw: str | None, name: str) -> bool:
    """A boolean form field: ``true`` or ``false`` (absent: false). Anything else (``1``, ``yes``, an empty field)
    is a 422, so what is accepted is exactly what the document says."""
    if raw is None:
        return False
    if raw not in BOOLEAN_SPELLINGS:
        raise ApiProblem(422, "invalid_field", f"{name} must be true or false, got {raw[:16]!r}")
    return BOOLEAN_SPELLINGS[raw]


def strict_boolean(value: object) -> object:
    """For a boolean query parameter (``BeforeValidator``): FastAPI would also take 1/0, yes/no, on/off, t/f."""
    if isinstance(value, str) and value not in BOOLEAN_SPELLINGS:
        raise ValueError("must be true or false")
    return value


def is_id(value: str) -> bool:
    return bool(_ID.fullmatch(value))
