"""What the benchmarks ran on, recorded next to the figures: a number without its machine cannot be compared.

Container limits matter more than the host here (a cgroup CPU quota or a shared 2-core VM), so the cgroup view
and the load average at the start are recorded as well as the host's CPU model and memory.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("onnxruntime", "numpy", "opencv-python-headless", "pillow", "boto3", "moto", "fastapi", "uvicorn")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def memory_total_gib() -> float | None:
    text = _read("/proc/meminfo") or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 2)
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 2)
    except (ValueError, OSError, AttributeError):
        return None


def cgroup_cpu_limit() -> float | None:
    """CPUs the cgroup (v2) may use, or None when unlimited or unknown."""
    text = _read("/sys/fs/cgroup/cpu.max")
    if not text:
        return None
    quota, _, period = text.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return round(int(quota) / int(period), 2)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(root: Path = REPO_ROOT) -> dict[str, Any]:
    """HEAD and whether the tree had uncommitted changes (figures from a dirty tree are marked as such)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def machine_info() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "cgroup_cpu_limit": cgroup_cpu_limit(),
        "memory_gib": memory_total_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": package_versions(),
        "git": git_commit(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def cpu_times() -> list[int] | None:
    """The machine's CPU time counters since boot (``/proc/stat``'s ``cpu`` line, in ticks), or None off Linux."""
    text = _read("/proc/stat")
    if not text:
        return None
    return [int(x) for x in text.splitlines()[0].split()[1:]]


def cpu_shares(before: list[int] | None, after: list[int] | None) -> dict[str, float] | None:
    """How the machine's CPU time went between two ``cpu_times`` readings, in percent: busy (user + system), idle,
    and stolen (taken by the hypervisor for other guests: on a shared VM, capacity the benchmark never had)."""
    if before is None or after is None:
        return None
    delta = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(delta[:8]) or 1
    busy = delta[0] + delta[1] + delta[2] + delta[5] + delta[6]
    return {
        "busy_pct": round(100 * busy / total, 1),
        "idle_pct": round(100 * (delta[3] + delta[4]) / total, 1),
        "steal_pct": round(100 * delta[7] / total, 1),
    }
