"""The CLI's pieces that need no worker: where it sends requests, which files it picks, the CSV, the retries, and
that one upload command makes one batch (against the real API on a socket, over the moto server).

The retry test uses httpx's in-memory transport as the *server*; the client code under test is real.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.api.main import create_app
from runtime.common.jobs import JobStore
from runtime.common.settings import Settings
from segscale_cli.client import ApiClient, ApiError
from segscale_cli.config import ConfigError, resolve
from segscale_cli.main import collect_files, main
from segscale_cli.table import write_csv


def test_flags_beat_environment_beat_state_file(tmp_path: Path) -> None:
    state = tmp_path / ".segscale" / "dev.json"
    state.parent.mkdir()
    state.write_text(json.dumps({"endpoint": "http://127.0.0.1:9/", "api_key": "from-file"}))
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    from_file = resolve(None, None, environ={}, cwd=below)
    assert (from_file.endpoint, from_file.api_key, from_file.source) == ("http://127.0.0.1:9", "from-file", str(state))
    env = {"SEGSCALE_ENDPOINT": "https://api.example", "SEGSCALE_API_KEY": "from-env"}
    assert resolve(None, None, environ=env, cwd=below).api_key == "from-env"
    assert resolve("http://flag", "flag-key", environ=env, cwd=below).endpoint == "http://flag"


def test_no_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="make dev"):
        resolve(None, None, environ={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="http"):
        resolve("localhost:8000", None, environ={}, cwd=tmp_path)


def test_cli_usage_errors_exit_2_before_any_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jpg"
    assert main(["upload", "--endpoint", "http://127.0.0.1:9", str(missing)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["upload", "--endpoint", "http://127.0.0.1:9", "--concurrency", "0", str(tmp_path)]) == 2


def test_collect_files_walks_folders_for_images_only(tmp_path: Path) -> None:
    for name in ("b.JPG", "a.png", "notes.txt", ".hidden/c.jpg", "sub/d.webp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    explicit = tmp_path / "notes.txt"
    found = collect_files([tmp_path, explicit, tmp_path / "a.png"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.png", "b.JPG", "sub/d.webp", "notes.txt"]


def test_csv_has_one_row_per_job_and_columns_per_class() -> None:
    jobs = [
        {
            "batch_id": "b1",
            "job_id": "j1",
            "file_name": "p.jpg",
            "status": "SUCCEEDED",
            "attempts": 1,
            "created_at": 1000,
            "finished_at": 1750,
            "result": {
                "model": "person",
                "model_version": "1",
                "width": 4,
                "height": 2,
                "classes": {"person": {"pixels": 3, "fraction": 0.375, "components": 1}},
                "timings_ms": {"inference": 5.0, "total": 9.0},
            },
        },
        {"batch_id": "b1", "job_id": "j2", "file_name": "x.jpg", "status": "FAILED", "error": "not an image"},
    ]
    out = io.StringIO()
    assert write_csv(jobs, out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["person_fraction"] == "0.375" and rows[0]["upload_to_result_ms"] == "750"
    assert rows[0]["inference_ms"] == "5.0" and rows[0]["model_version"] == "1"
    assert rows[1]["status"] == "FAILED" and rows[1]["error"] == "not an image" and rows[1]["person_pixels"] == ""


def test_csv_neutralises_formula_prefixed_names() -> None:
    jobs = [
        {"batch_id": "b1", "job_id": f"j{i}", "file_name": name, "status": "FAILED", "error": "x"}
        for i, name in enumerate(["=cmd|' /C calc'!A0.jpg", "@SUM(1).png", "-1.jpg", "ok.jpg"])
    ]
    jobs[3]["result"] = {"classes": {"person": {"pixels": -1}}}  # a number stays a number
    out = io.StringIO()
    write_csv(jobs, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["file_name"] for r in rows] == ["'=cmd|' /C calc'!A0.jpg", "'@SUM(1).png", "'-1.jpg", "ok.jpg"]
    assert rows[3]["person_pixels"] == "-1"


def _client(handler: object, **kw: object) -> ApiClient:
    api = ApiClient("http://api.test", "k", backoff_s=0, sleep=lambda s: None, **kw)  # type: ignore[arg-type]
    api.http = httpx.Client(base_url="http://api.test", transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    return api


def test_upload_retries_with_the_same_idempotency_key() -> None:
    seen: list[str | None] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Idempotency-Key"))
        if len(seen) == 1:
            raise httpx.ConnectError("connection refused")
        if len(seen) == 2:
            return httpx.Response(503, json={"detail": "busy"})
        if len(seen) == 3:
            return httpx.Response(408, json={"detail": "the request body stopped arriving"})
        return httpx.Response(202, json={"batch_id": "b" * 32, "jobs": []})

    out = _client(server).upload([("a.jpg", b"data")], idempotency_key="key-1")
    assert out["batch_id"] == "b" * 32
    assert seen == ["key-1"] * 4


def test_a_post_without_a_key_is_not_retried_and_4xx_is_raised() -> None:
    calls: list[int] = []

    def server(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if request.method == "POST":
            return httpx.Response(503)
        return httpx.Response(404, json={"type": "about:blank", "title": "Not Found", "detail": "no job zzz"})

    api = _client(server)
    with pytest.raises(ApiError, match="after 1 attempt"):
        api.request("POST", "/v1/images")
    with pytest.raises(ApiError, match="no job zzz") as info:
        api.job("zzz")
    assert info.value.status == 404 and calls == [1, 1]


def test_retries_give_up_after_the_limit() -> None:
    calls: list[int] = []

    def server(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(502)

    with pytest.raises(ApiError, match="after 3 attempt"):
        _client(server, retries=2).job("j")
    assert len(calls) == 3


@pytest.fixture()
def live_api(settings: Settings, tmp_path: Path) -> Iterator[list[str]]:
    """The real API on a socket over the moto server; yields the CLI's ``--endpoint/--api-key`` arguments."""
    from tests.api.conftest import write_card
    from tests.api.helpers import API_KEY, ThreadedUvicorn

    write_card(tmp_path / "models", "person")
    app = create_app(settings.model_copy(update={"models_dir": tmp_path / "models", "batch_window_s": 0.0}))
    with ThreadedUvicorn(app) as server:
        yield ["--endpoint", f"http://127.0.0.1:{server.port}", "--api-key", API_KEY, "--no-progress"]


def _photos(folder: Path, count: int) -> Path:
    from tests.api.helpers import image_bytes

    folder.mkdir()
    for i in range(count):
        (folder / f"p{i}.png").write_bytes(image_bytes("PNG", (16, 12), seed=i))
    return folder


def _batch_files(target: list[str], batch: str) -> tuple[dict[str, Any], list[str]]:
    with ApiClient(target[1], target[3]) as api:
        page = api.batch_page(batch)
    return page, sorted(j["file_name"] for j in page["jobs"])


def test_a_folder_upload_makes_one_batch(
    live_api: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = _photos(tmp_path / "photos", 5)
    # 5 files, 2 per request: 3 requests, one batch id printed; left open for more.
    args = ["upload", *live_api, "--files-per-request", "2", "--concurrency", "3", "--no-seal", str(photos)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1 and len(lines[0]) == 32 and "3 request(s)" in err and "sealed" not in err, (out, err)
    batch = lines[0]
    assert _batch_files(live_api, batch)[0]["state"] == "OPEN"
    # --batch adds to it, and this time the batch is sealed; a malformed one is refused before any request.
    assert main(["upload", *live_api, "--batch", batch, str(photos / "p0.png")]) == 0
    assert capsys.readouterr().out.split() == [batch]
    assert main(["upload", *live_api, "--batch", "not-a-batch", str(photos)]) == 2
    page, names = _batch_files(live_api, batch)
    assert page["total"] == 6 and page["counts"]["QUEUED"] == 6 and page["state"] == "SEALED"
    assert names == ["p0.png", "p0.png", "p1.png", "p2.png", "p3.png", "p4.png"]
    # A sealed batch takes no more images.
    assert main(["upload", *live_api, "--batch", batch, str(photos / "p1.png")]) == 1
    assert "HTTP 409" in capsys.readouterr().err
    assert _batch_files(live_api, batch)[0]["total"] == 6


def test_upload_with_a_notify_url_seals_and_wait_returns_once_completed(
    live_api: list[str], settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = _photos(tmp_path / "photos", 3)
    # The fixture's API runs in AWS mode: a loopback URL is refused before anything is uploaded.
    assert main(["upload", *live_api, "--notify-url", "https://127.0.0.1/hook", str(photos)]) == 1
    assert "HTTP 422: notify_url may not point inside a network" in capsys.readouterr().err
    assert main(["upload", *live_api, "--notify-url", "https://93.184.216.34/hook", "--batch", "0" * 32, "x"]) == 2
    assert main(["upload", *live_api, str(photos)]) == 0
    batch = capsys.readouterr().out.strip()
    store = JobStore.from_settings(settings)

    def worker() -> None:  # what the worker does, a moment after wait started polling
        time.sleep(1.0)
        for job in store.iter_batch(batch):
            store.claim(job["job_id"], "w")
            store.complete(job["job_id"], "w", result={}, mask_key=None, overlay_key=None)

    thread = threading.Thread(target=worker)
    thread.start()
    assert main(["wait", *live_api, "--interval", "0.2", "--timeout", "30", batch]) == 0
    thread.join()
    assert "3 succeeded, 0 failed" in capsys.readouterr().err
    assert _batch_files(live_api, batch)[0]["state"] == "COMPLETED"
    assert main(["seal", *live_api, batch]) == 0 and "COMPLETED" in capsys.readouterr().err


def test_one_bad_file_does_not_cost_the_rest_of_its_request(
    live_api: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The API refuses a whole request for one bad file; the CLI names that file and sends the others again."""
    photos = _photos(tmp_path / "photos", 4)
    (photos / "fake.jpg").write_text("<html>not an image</html>")
    (photos / "empty.png").write_bytes(b"")
    assert main(["upload", *live_api, "--files-per-request", "10", str(photos)]) == 1  # some files refused
    out, err = capsys.readouterr()
    assert "fake.jpg: HTTP 415" in err and "empty.png" in err and "uploaded 4 of 6" in err, err
    _, names = _batch_files(live_api, out.split()[0])
    assert names == ["p0.png", "p1.png", "p2.png", "p3.png"]


def test_wait_never_takes_an_ingesting_batch_for_done() -> None:
    from segscale_cli.main import is_done

    assert not is_done(3, {"SUCCEEDED": 3}, "INGESTING")  # the listing may still add jobs
    assert is_done(3, {"SUCCEEDED": 3}, "OPEN") and is_done(3, {"SUCCEEDED": 3}, "COMPLETED")
    assert not is_done(3, {"SUCCEEDED": 3}, "SEALED")


def test_admin_keys_create_list_rotate_revoke(
    live_api: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``segscale admin keys``: the key is printed once, on stdout alone; the client can use it at once, and not
    after it is revoked; a client key cannot run the admin commands."""
    assert main(["admin", "keys", "create", *live_api, "acme"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    key_id = key.split("_")[1]
    assert out == key + "\n" and key.startswith("sgk_") and f"key {key_id} for client 'acme'" in err
    as_client = [*live_api[:2], "--api-key", key, "--no-progress"]
    assert main(["upload", *as_client, "--no-seal", str(_photos(tmp_path / "photos", 1))]) == 0
    batch = capsys.readouterr().out.strip()
    assert main(["admin", "keys", "list", *live_api]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["KEY_ID", "CLIENT", "STATE", "CREATED", "REVOKED_AT"]
    assert [line.split()[:3] for line in table[1:]] == [[key_id, "acme", "active"]] and key not in "".join(table)
    assert main(["admin", "keys", "rotate", *live_api, "--grace", "0", key_id]) == 0
    rotated = capsys.readouterr().out.strip()
    assert rotated.startswith("sgk_") and rotated != key
    new_client = [*live_api[:2], "--api-key", rotated, "--no-progress"]
    assert main(["results", *new_client, batch]) == 0  # the same client: its batch, with the new key
    assert batch in capsys.readouterr().out
    assert main(["results", *as_client, batch]) == 1  # the old key stopped at once (grace 0)
    assert f"HTTP 401: API key {key_id} is revoked" in capsys.readouterr().err
    assert main(["admin", "keys", "list", *new_client]) == 1
    assert "HTTP 403" in capsys.readouterr().err
    assert main(["admin", "keys", "revoke", *live_api, rotated.split("_")[1]]) == 0
    assert "revoked" in capsys.readouterr().err
    assert main(["status", *new_client, "0" * 32]) == 1
    assert "HTTP 401" in capsys.readouterr().err
    assert main(["admin", "keys", "list", *live_api, "--all", "--json"]) == 0
    assert [k["state"] for k in json.loads(capsys.readouterr().out)] == ["revoked", "revoked"]
    assert main(["admin", "keys", "list", *live_api]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == []  # revoked keys only with --all
