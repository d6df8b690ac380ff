from __future__ import annotations

import json
import signal
import stat
import sys
import time
from pathlib import Path

import pytest

from local.dev import _nothing_done, sample_photo, settings_env, settings_from_env, write_state
from local.procs import spawn, stop


def test_settings_env_round_trips_and_refuses_unknown_names() -> None:
    env = settings_env({"lease_seconds": "3", "stuck_after_s": 2})
    assert env == {"SEGSCALE_LEASE_SECONDS": "3", "SEGSCALE_STUCK_AFTER_S": "2"}
    settings = settings_from_env({**env, "SEGSCALE_TABLE": "t1", "UNRELATED": "x"})
    assert (settings.lease_seconds, settings.stuck_after_s, settings.table) == (3, 2, "t1")
    with pytest.raises(KeyError, match="lease_secs"):
        settings_env({"lease_secs": "3"})


def test_state_file_is_private_json(tmp_path: Path) -> None:
    path = write_state({"endpoint": "http://127.0.0.1:1", "api_key": "k"}, tmp_path / ".segscale")
    assert json.loads(path.read_text())["api_key"] == "k"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_sample_photo_is_a_real_jpeg(tmp_path: Path) -> None:
    photo = sample_photo(tmp_path)
    assert photo.read_bytes()[:3] == b"\xff\xd8\xff" and photo.stat().st_size > 10_000


def test_nothing_done_reads_counts() -> None:
    assert _nothing_done({"scanned": 5, "requeued": {"lease_expired": []}, "send_failed": []})
    assert not _nothing_done({"scanned": 5, "requeued": {"lease_expired": ["a" * 32]}})
    assert not _nothing_done("not a report")


def test_stop_kills_a_group_that_ignores_sigterm(tmp_path: Path) -> None:
    """A child that ignores SIGTERM, and its own grandchild, are both gone after ``stop``."""
    pid_file = tmp_path / "grandchild"
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    proc = spawn([sys.executable, "-c", code])
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    assert stop(proc, timeout_s=0.5) == -signal.SIGKILL
    for _ in range(100):
        if not Path(f"/proc/{grandchild}").exists() or "Z" in _state(grandchild):
            break
        time.sleep(0.05)
    assert not Path(f"/proc/{grandchild}").exists() or "Z" in _state(grandchild)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except OSError:
        return "Z"
