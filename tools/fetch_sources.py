"""Reproduce the committed model files under ``runtime/models`` from the PyPI wheels they come from.

Why: the models are committed (the worker image must not download at run time), so anyone must be able to check
that they are what we say they are. This tool downloads each source wheel with pip (once, into a cache folder),
verifies the sha256 of the file taken from it, converts or copies it, and writes ``model.onnx`` and ``LICENSE``
next to each hand-written ``card.json``; it then checks the card's ``sha256`` against the written model.

    python -m tools.fetch_sources              # write runtime/models/{person,text}/
    python -m tools.fetch_sources --check      # rebuild in memory and compare with the committed files
    python -m tools.fetch_sources --update-cards   # also write the model sha256 into each card
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO_ROOT / ".cache" / "segscale-sources"
DEFAULT_MODELS = REPO_ROOT / "runtime" / "models"


class SourceError(RuntimeError):
    """A source wheel could not be fetched, or a file in it is missing or not the expected one."""


@dataclass(frozen=True)
class Wheel:
    project: str
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"

    @property
    def glob(self) -> str:
        return f"{self.project.replace('-', '_')}-{self.version}-*.whl"


MEDIAPIPE = Wheel("mediapipe", "0.10.21")
RAPIDOCR = Wheel("rapidocr-onnxruntime", "1.4.4")

SELFIE_TFLITE = "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"
SELFIE_TFLITE_SHA256 = "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"
TFLITE_SCHEMA = "mediapipe/tasks/metadata/schema_py_generated.py"
MEDIAPIPE_LICENSE = "mediapipe-0.10.21.dist-info/LICENSE"
TEXT_DET_ONNX = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
TEXT_DET_SHA256 = "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"
_SHA_FIELD = re.compile(r'"sha256"\s*:\s*(null|"[0-9a-fA-F]*")')
APACHE_END = "   limitations under the License.\n"  # last line of the Apache-2.0 text (with its appendix)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("SEGSCALE_SOURCES_CACHE", DEFAULT_CACHE))


def cached_wheel(wheel: Wheel, cache: Path | None = None) -> Path | None:
    """The wheel if it is already in the cache (any platform tag: the files we take are the same in each)."""
    found = sorted((cache or cache_dir()).glob(wheel.glob))
    return found[0] if found else None


def fetch_wheel(wheel: Wheel, cache: Path | None = None) -> Path:
    """The cached wheel, downloaded with pip (no dependencies, binary only) if it is not cached yet."""
    cache = cache or cache_dir()
    found = cached_wheel(wheel, cache)
    if found:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", wheel.requirement, "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", "-d", str(cache)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = cached_wheel(wheel, cache)
    if proc.returncode != 0 or found is None:
        raise SourceError(f"pip download {wheel.requirement} failed: {proc.stderr.strip()[-2000:]}")
    return found


def read_member(wheel_path: Path, member: str, expected_sha256: str | None = None) -> bytes:
    """One file from a wheel; with ``expected_sha256``, refuse anything but the exact expected bytes."""
    try:
        with zipfile.ZipFile(wheel_path) as zf:
            data = zf.read(member)
    except KeyError as exc:
        raise SourceError(f"{wheel_path.name} has no {member}") from exc
    except zipfile.BadZipFile as exc:
        raise SourceError(f"{wheel_path} is not a valid wheel: {exc}") from exc
    if expected_sha256 is not None and sha256(data) != expected_sha256:
        raise SourceError(f"{member} in {wheel_path.name}: sha256 {sha256(data)}, expected {expected_sha256}")
    return data


def apache_license_text(mediapipe_wheel: Path) -> str:
    """The plain Apache-2.0 text: the first part of MediaPipe's LICENSE (the rest covers bundled third parties)."""
    text = read_member(mediapipe_wheel, MEDIAPIPE_LICENSE).decode()
    end = text.find(APACHE_END)
    if not text.lstrip().startswith("Apache License") or end < 0:
        raise SourceError("MediaPipe's LICENSE does not start with the Apache-2.0 text")
    return text[: end + len(APACHE_END)]


def convert_selfie(mediapipe_wheel: Path) -> bytes:
    """The selfie segmentation TFLite model from the wheel, converted to ONNX bytes."""
    from tools.tflite_to_onnx import convert, load_schema  # imports onnx: only when converting

    tflite = read_member(mediapipe_wheel, SELFIE_TFLITE, SELFIE_TFLITE_SHA256)
    with tempfile.TemporaryDirectory() as tmp:
        schema_path = Path(tmp) / "schema_py_generated.py"
        schema_path.write_bytes(read_member(mediapipe_wheel, TFLITE_SCHEMA))
        schema = load_schema(schema_path)
    model = convert(tflite, schema, input_names=("input",), output_names=("output",), dynamic_batch=True)
    return model.SerializeToString()


def build_person(cache: Path | None = None) -> dict[str, bytes]:
    wheel = fetch_wheel(MEDIAPIPE, cache)
    return {"model.onnx": convert_selfie(wheel), "LICENSE": read_member(wheel, MEDIAPIPE_LICENSE)}


def build_text(cache: Path | None = None) -> dict[str, bytes]:
    wheel = fetch_wheel(RAPIDOCR, cache)
    header = (
        "ch_PP-OCRv4_det_infer.onnx: PaddleOCR PP-OCRv4 text detection (DBNet), as converted to ONNX and\n"
        f"distributed by RapidOCR in the PyPI wheel {RAPIDOCR.requirement} (file {TEXT_DET_ONNX}).\n"
        "PaddleOCR and RapidOCR are licensed under the Apache License, Version 2.0 (the wheel's metadata says\n"
        "'License: Apache-2.0'; the wheel ships no licence file, so the licence text follows).\n\n"
    )
    licence = header + apache_license_text(fetch_wheel(MEDIAPIPE, cache))
    return {"model.onnx": read_member(wheel, TEXT_DET_ONNX, TEXT_DET_SHA256), "LICENSE": licence.encode()}


BUILDERS: dict[str, Callable[[Path | None], dict[str, bytes]]] = {"person": build_person, "text": build_text}


def check_card_sha(card_path: Path, model: bytes, update: bool) -> str | None:
    """None if the card names the model's sha256 (after an update, if asked); otherwise what is wrong."""
    card = json.loads(card_path.read_text())
    digest = sha256(model)
    if card.get("sha256") == digest:
        return None
    if update:  # edit the one field in place so the hand-written layout stays
        text, count = _SHA_FIELD.subn(f'"sha256": "{digest}"', card_path.read_text())
        if count != 1:
            return f'{card_path}: needs exactly one "sha256" field (null or a string) to update'
        card_path.write_text(text)
        return None
    return f"{card_path}: sha256 {card.get('sha256')} but the model is {digest} (run with --update-cards)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help=f"which models, of {', '.join(BUILDERS)} (default: all)")
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--cache", type=Path, default=None, help=f"wheel cache (default {DEFAULT_CACHE})")
    parser.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    parser.add_argument("--update-cards", action="store_true", help="write the model sha256 into each card")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - BUILDERS.keys())
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(BUILDERS)}")
    problems = []
    for name in args.models or list(BUILDERS):
        try:
            files = BUILDERS[name](args.cache)
        except SourceError as exc:
            problems.append(f"{name}: {exc}")
            continue
        folder = args.models_dir / name
        for file_name, data in files.items():
            target = folder / file_name
            if args.check:
                if not target.is_file() or target.read_bytes() != data:
                    problems.append(f"{target} differs from its source (rebuilt sha256 {sha256(data)})")
                continue
            folder.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            print(f"wrote {target} ({len(data)} bytes, sha256 {sha256(data)})")
        card_problem = check_card_sha(folder / "card.json", files["model.onnx"], args.update_cards and not args.check)
        if card_problem:
            problems.append(card_problem)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems and args.check:
        print("all model files match their sources")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
