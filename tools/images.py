"""``make images``: build the API, worker and results images with buildah and run each against a local moto server.

No Docker engine is needed (nor available in CI): buildah builds as root with ``--isolation chroot`` and the vfs
storage driver. Each image then runs its own command (from the image's config) as the image's user, on a
read-only bind mount of its root with a fresh ``/tmp``, against a moto server on this machine:

- worker: one real photo job -> SUCCEEDED;
- results: ``reconcile`` and ``export --batch`` -> exit 0, the CSV in S3;
- api: ``/healthz`` and an upload with the key -> 202.

Docker Hub and public ECR may be unreachable, so the bases the Dockerfiles name must already be in buildah's
storage; ``--make-base`` builds a stand-in for ``python:3.11.7-slim-bookworm`` from Debian bookworm with
debootstrap (its Python is 3.11.2). Without buildah, root or a base image this prints why and exits 0: the
target is optional, ``make test`` checks what can be checked without building (tests/images).
The Lambda image is not built: its Amazon Linux 2023 base cannot be made here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "runtime"
STORAGE = ["--storage-driver", "vfs"]
BASE = "python:3.11.7-slim-bookworm"
BASE_PACKAGES = "python3,python3-venv,python3-pip,python-is-python3,ca-certificates,passwd,findutils"
SERVICES = ("worker", "results", "api")
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class Built:
    service: str
    tag: str
    user: str
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    workdir: str

    @property
    def argv(self) -> list[str]:
        return [*self.entrypoint, *self.cmd]


def buildah(*args: str, check: bool = True, capture: bool = True, timeout: float = 3600) -> str:
    proc = subprocess.run(["buildah", *STORAGE, *args], capture_output=capture, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"buildah {' '.join(args[:3])} failed:\n{(proc.stderr or '')[-3000:]}")
    return proc.stdout or ""


def why_not() -> str | None:
    """The reason images cannot be built here, or None."""
    if shutil.which("buildah") is None:
        return "buildah is not installed (Debian: apt-get install buildah)"
    if os.geteuid() != 0:
        return "buildah with the vfs driver and chroot isolation needs root here"
    names = buildah("images", "--format", "{{.Name}}:{{.Tag}}", check=False).split()
    if not any(name.endswith(BASE) for name in names):
        return f"no {BASE} base image in buildah's storage (make one: python -m tools.images --make-base)"
    return None


def make_base(workdir: Path) -> None:
    """A stand-in for the python slim image: Debian bookworm's own Python 3.11, pip and venv."""
    if shutil.which("debootstrap") is None:
        raise SystemExit("debootstrap is not installed (apt-get install debootstrap)")
    rootfs = workdir / "rootfs"
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(rootfs)], check=True
    )
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    container = buildah("from", "scratch").strip()
    mount = buildah("mount", container).strip()
    subprocess.run(["cp", "-a", f"{rootfs}/.", mount], check=True)
    buildah("umount", container)
    buildah("config", "--env", "LANG=C.UTF-8", "--cmd", "python3", container)
    buildah("commit", container, f"docker.io/library/{BASE}")
    buildah("rm", container)
    print(f"made {BASE} from Debian bookworm", flush=True)


def build(service: str) -> Built:
    dockerfile = RUNTIME / service / "Dockerfile"
    tag = f"localhost/segscale-{service}:local"
    started = time.monotonic()
    # This machine's CA bundle, for the build only (a TLS-inspecting proxy may sit between pip and PyPI); the image
    # keeps its own certificates.
    certs = ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"] if Path(HOST_CA_BUNDLE).is_file() else []
    buildah(
        "bud", "--isolation", "chroot", "--pull=never", "--layers=false", *certs,
        "--ignorefile", str(dockerfile.with_name("Dockerfile.dockerignore")),
        "-f", str(dockerfile), "-t", tag, str(RUNTIME),
        capture=False,
    )  # fmt: skip
    config = json.loads(buildah("inspect", "--type", "image", tag))["OCIv1"]["config"]
    env = dict(item.split("=", 1) for item in config.get("Env", []))
    size = buildah("images", "--format", "{{.Size}}", tag).strip()
    print(f"built {tag} ({size}) in {time.monotonic() - started:.0f} s", flush=True)
    entrypoint, cmd = config.get("Entrypoint") or [], config.get("Cmd") or []
    return Built(service, tag, config.get("User", "0"), env, entrypoint, cmd, config.get("WorkingDir") or "/")


@contextlib.contextmanager
def read_only_root(built: Built) -> Iterator[Path]:
    """The image's filesystem, mounted read-only, with a writable /tmp and the host's /dev and /proc."""
    container = buildah("from", "--pull=never", built.tag).strip()
    mount = Path(buildah("mount", container).strip())
    root = Path(tempfile.mkdtemp(prefix=f"segscale-{built.service}-root-"))
    mounted: list[Path] = []
    try:
        subprocess.run(["mount", "--bind", str(mount), str(root)], check=True)
        mounted.append(root)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(root)], check=True)
        extra = (("tmp", ["-t", "tmpfs", "tmpfs"]), ("dev", ["--bind", "/dev"]), ("proc", ["-t", "proc", "proc"]))
        for path, how in extra:
            subprocess.run(["mount", *how, str(root / path)], check=True)
            mounted.append(root / path)
        yield root
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", str(path)], check=False)
        root.rmdir()
        buildah("umount", container, check=False)
        buildah("rm", container, check=False)


def run_in(built: Built, root: Path, argv: list[str], env: dict[str, str], **kw: object) -> subprocess.Popen[str]:
    """``argv`` in the image as its user (chroot, host network: the moto server on 127.0.0.1 is reachable)."""
    user = built.user if ":" in built.user else f"{built.user}:{built.user}"
    command = ["chroot", f"--userspec={user}", str(root), "sh", "-c", 'cd "$0" && exec "$@"', built.workdir, *argv]
    full_env = {**built.env, "HOME": "/nonexistent", **env}
    return subprocess.Popen(command, env=full_env, text=True, **kw)  # type: ignore[call-overload]


def check(images: dict[str, Built]) -> None:
    sys.path.insert(0, str(ROOT))
    from local.motoserver import MotoServer
    from local.resources import create_resources
    from runtime.common.aws import client
    from runtime.common.jobs import JobStore, NewJob
    from runtime.common.messages import chunk

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = MotoServer().start()
    try:
        res = create_resources(server.url, prefix="images")
        settings = res.settings()
        s3, store = client("s3", settings), JobStore.from_settings(settings, client("dynamodb", settings))
        import matplotlib

        body = (Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").read_bytes()
        batch, job = "c" * 32, "d" * 32
        key = f"uploads/{batch}/{job}.jpg"
        s3.put_object(Bucket=res.bucket, Key=key, Body=body)
        store.create(NewJob(job_id=job, batch_id=batch, input_key=key, file_name="hopper.jpg", model="person"))
        env = {**res.env(), "SEGSCALE_API_KEY": "images-check"}

        if "worker" in images:
            w = images["worker"]
            with read_only_root(w) as root:
                proc = run_in(w, root, w.argv, {**env, "JOB_BATCH": chunk([job], 10)[0].to_body()})
                assert proc.wait(timeout=600) == 0, "the worker image exited non-zero"
            item = store.get(job)
            assert item is not None and item["status"] == "SUCCEEDED", f"worker image: job is {item}"
            print("worker image: job SUCCEEDED", flush=True)
        if "results" in images:
            r = images["results"]
            with read_only_root(r) as root:
                for command in (r.cmd, ["export", "--batch", batch]):
                    argv = [*r.entrypoint, *command]
                    assert run_in(r, root, argv, env).wait(timeout=600) == 0, f"results image: {command} failed"
            reports = s3.list_objects_v2(Bucket=res.bucket, Prefix="reports/").get("KeyCount", 0)
            assert reports, "results image: no export in S3"
            print("results image: reconcile and export exit 0", flush=True)
        if "api" in images:
            check_api(images["api"], env)
    finally:
        server.stop()


def check_api(api: Built, env: dict[str, str]) -> None:
    import httpx

    from local.procs import free_port

    port = free_port()
    argv = list(api.argv)  # uvicorn ... --host 0.0.0.0 --port 8000: a free loopback port instead
    argv[argv.index("--port") + 1] = str(port)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    with read_only_root(api) as root:
        proc = run_in(api, root, argv, env)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                time.sleep(0.5)
            files = {"file": ("x.png", _png(), "image/png")}
            answer = httpx.post(f"{url}/v1/images", files=files, headers={"X-Api-Key": "images-check"}, timeout=30)
            assert answer.status_code == 202, f"api image: upload answered {answer.status_code} {answer.text}"
            print("api image: /healthz and an upload answered", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.images", description=__doc__.splitlines()[0])
    parser.add_argument("--make-base", action="store_true", help=f"build a stand-in {BASE} with debootstrap first")
    parser.add_argument("services", nargs="*", default=list(SERVICES), help=f"some of {', '.join(SERVICES)}")
    args = parser.parse_args(argv)
    unknown = set(args.services) - set(SERVICES)
    if unknown:
        parser.error(f"unknown image(s) {sorted(unknown)}; choose from {list(SERVICES)}")
    if args.make_base:
        with tempfile.TemporaryDirectory(prefix="segscale-base-") as tmp:
            make_base(Path(tmp))
    reason = why_not()
    if reason:
        print(f"make images: skipped: {reason}", flush=True)
        return 0
    images = {service: build(service) for service in args.services}
    check(images)
    print("make images: all images built and ran as their users on a read-only root", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
