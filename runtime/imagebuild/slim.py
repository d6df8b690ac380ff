"""Trim an image's installed dependencies to what its code uses; run in each Dockerfile's build stage.

The worker image is pulled by every Fargate task it starts, so its size is start-up time (docs/deploy.md). What
goes, and why it is safe (tests/images builds the same venv, runs this script and then runs the worker from it):

- botocore's and boto3's data for services the container never calls (about 28 MB of JSON models): the
  services each container calls are the ones the least-privilege contract test records, and it checks that each
  is kept here;
- test suites shipped inside packages (``tests`` folders: numpy's alone are about 15 MB);
- ``--drop`` paths of packages the code never imports (onnxruntime's training and conversion tools, say).

Usage: ``python slim.py SITE_PACKAGES --botocore-services s3 dynamodb sqs [--drop onnxruntime/tools ...]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def slim(site: Path, services: set[str], drop: list[str]) -> int:
    """Remove what is not needed; returns the bytes freed."""
    before = size(site)
    for data in (site / "botocore" / "data", site / "boto3" / "data"):
        if not data.is_dir():
            raise SystemExit(f"{data} not found: is {site} a site-packages folder with boto3 installed?")
        unknown = services - {p.name for p in data.iterdir() if p.is_dir()}
        if data.parent.name == "botocore" and unknown:
            raise SystemExit(f"botocore has no service data for {sorted(unknown)}")
        for service in data.iterdir():
            if service.is_dir() and service.name not in services:
                shutil.rmtree(service)
    for tests in sorted(site.glob("*/**/tests"), reverse=True):
        if tests.is_dir() and not tests.is_symlink():
            shutil.rmtree(tests)
    for rel in drop:
        target = site / rel
        if not target.exists():
            raise SystemExit(f"--drop {rel}: {target} does not exist (a package changed its layout?)")
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return before - size(site)


def size(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site_packages", type=Path)
    parser.add_argument("--botocore-services", nargs="+", required=True, metavar="SERVICE")
    parser.add_argument("--drop", nargs="*", default=[], metavar="PATH", help="relative to site-packages")
    args = parser.parse_args(argv)
    freed = slim(args.site_packages, set(args.botocore_services), args.drop)
    print(f"slim: freed {freed / 1e6:.1f} MB in {args.site_packages}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
