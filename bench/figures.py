"""The one result format every benchmark returns, so `python -m bench` can tabulate them all.

A benchmark module ``bench/<name>.py`` exposes ``run(*, quick: bool = False) -> list[Figure]``; ``quick`` runs it
once on a tiny input (the smoke test in tests/bench uses it so benchmarks cannot rot).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Figure:
    benchmark: str  # e.g. "api_upload"
    name: str  # e.g. "uploads/s at concurrency 8"
    value: float
    unit: str  # e.g. "images/s", "ms"
    baseline_name: str | None = None  # what the value is compared with, measured in the same run
    baseline_value: float | None = None
    higher_is_better: bool = True
    samples: list[float] = field(default_factory=list)  # one value per repetition; value is their median
    notes: str = ""
    # One baseline value per repetition (filled by `python -m bench`); baseline_value is their median.
    baseline_samples: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value  # type: ignore[operator]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Figure:
        """Inverse of ``to_dict`` (``ratio`` is derived, so it is dropped); used to read results back."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})
