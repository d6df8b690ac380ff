"""The separate venv with ``mediapipe==0.10.21`` for the fidelity test, built once and cached.

Why separate: that wheel pins numpy<2 and protobuf<5, which the project's own venv must not get. The venv lives in
``.venv-mediapipe/`` (git-ignored) and is reused while its stamp (the wheel's name and the requirements file's hash)
matches; a half-built venv has no stamp and is rebuilt.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from tools.fetch_sources import MEDIAPIPE, REPO_ROOT, fetch_wheel

VENV = REPO_ROOT / ".venv-mediapipe"
REQUIREMENTS = Path(__file__).with_name("mediapipe-reference-requirements.txt")
STAMP = ".segscale-stamp"


def _stamp(wheel: Path) -> str:
    return f"{wheel.name} {hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()}\n"


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def reference_python() -> Path:
    """The interpreter of a ready reference venv, building it first if needed (about 10 s with a warm pip cache).

    Built lean: a venv without its own pip (this interpreter's pip installs into it with ``--python``), and no
    ahead-of-time bytecode for the ~340 MB of packages, of which the reference script imports a small part.
    Without these, ``ensurepip`` and compiling everything took most of the build (under load ~100 s, now ~25 s).
    """
    wheel = fetch_wheel(MEDIAPIPE)
    python = VENV / "bin" / "python"
    stamp = VENV / STAMP
    if stamp.is_file() and stamp.read_text() == _stamp(wheel) and python.exists():
        return python
    shutil.rmtree(VENV, ignore_errors=True)
    _run([sys.executable, "-m", "venv", "--without-pip", str(VENV)])
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check", "install", "--quiet"]
    pip.append("--no-compile")
    _run([*pip, "--no-deps", str(wheel)])
    _run([*pip, "--only-binary=:all:", "-r", str(REQUIREMENTS)])
    stamp.write_text(_stamp(wheel))
    return python
