"""What each image's build context holds: read by the CDK assets and by the image tests (no CDK import here)."""

from __future__ import annotations

from pathlib import Path

RUNTIME_DIR = Path(__file__).resolve().parents[1] / "runtime"
# Each image's build context is runtime/; leaving out the other services keeps one service's edit from
# changing (and rebuilding) every image.
EXCLUDES: dict[str, list[str]] = {
    "api": ["worker", "models/**/*.onnx"],  # results: the API serves a batch's CSV with the export's code
    "worker": ["api", "results"],
    "results": ["api", "worker", "models/**/*.onnx"],
}


def common_excludes() -> list[str]:
    """What no build context needs: ``runtime/.dockerignore``, which ``docker build`` reads as well as CDK."""
    lines = (RUNTIME_DIR / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def asset_excludes(service: str) -> list[str]:
    """What ``service``'s image build context leaves out (caches, other services, weights it does not use)."""
    return [*common_excludes(), *EXCLUDES[service]]
