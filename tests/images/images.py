"""The container images as their Dockerfiles declare them, and their dependencies built the way the images build them.

No Docker engine runs here or in CI, so what an image build would prove is checked piece by piece: the pinned
requirements resolve to binary wheels for the base image's Python and glibc, the installed dependencies fit a
size budget after the same trimming the Dockerfile does (``runtime/imagebuild/slim.py`` with the Dockerfile's
own arguments), and the worker runs from them. ``make images`` builds the real images where buildah exists.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime"
CACHE = ROOT / ".cache" / "images"  # built dependency folders, reused while their inputs are unchanged
SLIM = RUNTIME / "imagebuild" / "slim.py"


@dataclass(frozen=True)
class Platform:
    """What a base image offers installed wheels: CPython version and glibc."""

    python: str  # "3.11"
    glibc: tuple[int, int]

    def pip_args(self) -> list[str]:
        """pip's target-platform flags; pip does not widen one manylinux tag to older glibc, so list them all."""
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_x86_64" for m in range(minor, 4, -1)]
        legacy = {17: "manylinux2014_x86_64", 12: "manylinux2010_x86_64", 5: "manylinux1_x86_64"}
        tags += [tag for m, tag in legacy.items() if m <= minor]
        abi = "cp" + self.python.replace(".", "")
        args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", self.python, "--abi", abi]
        for tag in tags:
            args += ["--platform", tag]
        return args


# Every base image a Dockerfile may start from, with the facts pip needs. A new base must be added here (a test
# fails until it is), so its wheels are checked against its own Python and glibc.
BASES: dict[str, Platform] = {
    "python:3.11.7-slim-bookworm": Platform("3.11", (2, 36)),  # Debian 12
    "public.ecr.aws/lambda/python:3.12": Platform("3.12", (2, 34)),  # Amazon Linux 2023
}
# What the previous Lambda base offered (Amazon Linux 2): kept to prove the wheel check refuses it.
AMAZON_LINUX_2_PYTHON_311 = Platform("3.11", (2, 26))


@dataclass(frozen=True)
class Image:
    """One Dockerfile: its service, base, requirements and the slim step of its build stage."""

    dockerfile: Path

    @property
    def name(self) -> str:
        return str(self.dockerfile.relative_to(RUNTIME))

    @property
    def service(self) -> str:
        return self.dockerfile.parent.name

    @property
    def instructions(self) -> list[tuple[str, str]]:
        """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
        text = re.sub(r"\\\n", " ", self.dockerfile.read_text())
        out = []
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                word, _, rest = line.partition(" ")
                out.append((word.upper(), rest.strip()))
        return out

    @property
    def bases(self) -> list[str]:
        return [args.split()[0] for word, args in self.instructions if word == "FROM"]

    @property
    def platform(self) -> Platform:
        return BASES[self.bases[-1]]

    @property
    def requirements(self) -> Path:
        (source,) = [args.split()[0] for word, args in self.instructions if word == "COPY" and "requirements" in args]
        return RUNTIME / source

    @property
    def slim_args(self) -> list[str]:
        """The arguments the Dockerfile passes to slim.py after the site-packages folder."""
        for word, args in self.instructions:
            if word == "RUN" and "slim.py" in args:
                command = args.split("slim.py", 1)[1].split("&&")[0]
                return shlex.split(command)[1:]
        raise AssertionError(f"{self.name} does not run imagebuild/slim.py")

    @property
    def env(self) -> dict[str, str]:
        """The final stage's ENV values."""
        stages = [i for i, (word, _) in enumerate(self.instructions) if word == "FROM"]
        out: dict[str, str] = {}
        for word, args in self.instructions[stages[-1] :]:
            if word == "ENV":
                out.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
        return out

    def botocore_services(self) -> set[str]:
        args = self.slim_args
        start = args.index("--botocore-services") + 1
        end = next((i for i in range(start, len(args)) if args[i].startswith("--")), len(args))
        return set(args[start:end])


IMAGES = [Image(p) for p in sorted(RUNTIME.glob("*/Dockerfile*")) if p.suffix != ".dockerignore"]


def pip(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def built_dependencies(image: Image) -> Path:
    """The image's dependency folder (what its build stage installs, then trims), built once per input change."""
    digest = hashlib.sha256()
    for part in (image.requirements.read_bytes(), SLIM.read_bytes(), " ".join(image.slim_args).encode()):
        digest.update(part)
    digest.update(repr(image.platform).encode())
    folder = CACHE / f"{image.name.replace('/', '-')}-{digest.hexdigest()[:16]}"
    if (folder / ".complete").exists():
        return folder / "site-packages"
    shutil.rmtree(folder, ignore_errors=True)
    site = folder / "site-packages"
    same_python = image.platform.python == f"{sys.version_info.major}.{sys.version_info.minor}"
    compile_flag = [] if same_python else ["--no-compile"]  # pyc files of another Python would be wrong anyway
    proc = pip(
        "install", "--quiet", "--target", str(site), *image.platform.pip_args(), *compile_flag,
        "-r", str(image.requirements),
    )  # fmt: skip
    assert proc.returncode == 0, f"{image.name}: installing {image.requirements.name} failed:\n{proc.stderr[-3000:]}"
    slimmed = subprocess.run(
        [sys.executable, str(SLIM), str(site), *image.slim_args], capture_output=True, text=True, timeout=300
    )
    assert slimmed.returncode == 0, slimmed.stderr
    (folder / ".complete").write_text(slimmed.stderr)
    return site


def size_mb(root: Path) -> float:
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def distributions(site: Path) -> set[str]:
    return {p.name.split("-")[0].lower().replace("_", "-") for p in site.glob("*.dist-info")}
