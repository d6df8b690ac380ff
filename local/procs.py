"""Start and stop child processes so that nothing outlives the local stack.

Each child runs in its own session (process group): stopping it signals the whole group, so a child's own
children (uvicorn workers, a shell wrapper) go too. Stopping is SIGTERM first, then SIGKILL after a timeout.
On Linux the child also gets SIGKILL if the thread that started it dies (PR_SET_PDEATHSIG), so even a
``kill -9`` of ``make dev`` leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import httpx

from runtime.common import logs

REPO_ROOT = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask the kernel to SIGKILL us when the parent thread exits."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
    cwd: Path = REPO_ROOT,
    die_with_parent: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new process group; ``env`` is added to this process's environment."""
    full_env = {**os.environ, **(env or {})}
    # The repository is not installed as a package: children import ``runtime`` and ``local`` from the root.
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), full_env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(
        list(argv),
        env=full_env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=_die_with_parent if (die_with_parent and sys.platform.startswith("linux")) else None,
    )


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the child's process group (it leads its own session); ignore one that is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen[bytes], *, timeout_s: float = 10.0) -> int:
    """SIGTERM the group, wait up to ``timeout_s``, then SIGKILL; returns the exit status."""
    stop_all([proc], timeout_s=timeout_s)
    return int(proc.returncode)


def stop_all(procs: Sequence[subprocess.Popen[bytes]], *, timeout_s: float = 10.0) -> None:
    """``stop`` for many at once, as ECS stops tasks: all get SIGTERM together and share one grace period, so
    stopping N children takes at most ``timeout_s``, not N times it."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in running:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_group(proc, signal.SIGKILL)
            proc.wait()
    # The leader may be gone while others in its group linger (a child that ignored SIGTERM): finish them.
    for proc in procs:
        signal_group(proc, signal.SIGKILL)


def wait_until(check: Callable[[], bool], *, timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    """Poll ``check`` until it is true; raise ``TimeoutError`` naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


def log_event(stream: IO[str] | None, event: str, **fields: Any) -> None:
    """One JSON line per event, in the containers' log format (runtime/common/logs.py), plus ``event``."""
    out = stream if stream is not None else sys.stdout
    out.write(logs.line("segscale.local", event, event=event, **fields) + "\n")
    out.flush()
