"""Models from an S3 prefix in the API: listed, accepted for jobs, refused when broken, never a 500 when S3 fails.

Cards are put on the moto server of the test; the API reads them through its real boto3 client (wrapped only to
count calls or to fail as an unreachable endpoint would).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from fastapi.testclient import TestClient

from runtime.api.main import create_app
from runtime.api.s3models import S3Cards
from runtime.common.aws import client
from runtime.common.settings import Settings
from tests.api.helpers import AUTH, image_bytes, post_images, stored
from tests.aws_errors import access_denied, leaks

PREFIX = "models/"


def card(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "version": "2",
        "title": f"{name} from S3",
        "license": "MIT",
        "source": "a user",
        "input": {"size": [32, 32]},
        "output": {"activation": "sigmoid"},
        "classes": [{"id": 1, "name": "thing"}],
        **extra,
    }


def put(s3: Any, bucket: str, key: str, body: bytes | dict[str, Any]) -> None:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    s3.put_object(Bucket=bucket, Key=PREFIX + key, Body=data)


def put_model(s3: Any, bucket: str, name: str, **extra: Any) -> None:
    put(s3, bucket, f"{name}/card.json", card(name, **extra))
    put(s3, bucket, f"{name}/model.onnx", b"weights are never read by the API")


class Flaky:
    """A real boto3 S3 client that counts calls and, while ``down`` is set, fails reads of the models prefix."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.calls: Counter[str] = Counter()
        self.down = False
        self.error: Exception | None = None  # raised while down; default: an unreachable endpoint
        self._lock = threading.Lock()

    def __getattr__(self, op: str) -> Any:
        method = getattr(self._real, op)
        if op not in ("list_objects_v2", "get_object"):
            return method

        def call(**kwargs: Any) -> Any:
            models = str(kwargs.get("Prefix", kwargs.get("Key", ""))).startswith(PREFIX)
            with self._lock:
                self.calls[op] += models
            if models and self.down:
                raise self.error or EndpointConnectionError(endpoint_url="https://s3.invalid")
            return method(**kwargs)

        return call


@pytest.fixture()
def s3(settings: Settings) -> Any:
    return client("s3", settings)


@pytest.fixture()
def s3_settings(api_settings: Settings) -> Settings:
    """Cache time 0: every request reads the prefix, so a test sees each change at once."""
    uri = f"s3://{api_settings.bucket}/{PREFIX}"
    return api_settings.model_copy(update={"models_s3_uri": uri, "models_s3_cache_s": 0.0})


@pytest.fixture()
def flaky(s3: Any) -> Flaky:
    return Flaky(s3)


@pytest.fixture()
def s3_api(s3_settings: Settings, flaky: Flaky) -> Iterator[TestClient]:
    with TestClient(create_app(s3_settings, s3=flaky), headers=AUTH) as c:
        yield c


def problem_type(r: Any) -> str:
    return str(r.json()["type"]).rsplit(":", 1)[-1]


def test_lists_baked_in_and_s3_models_with_their_origin(s3_api: TestClient, s3: Any, settings: Settings) -> None:
    put_model(s3, settings.bucket, "mine")
    put(s3, settings.bucket, "classic/card.json", card("classic", runtime="opencv", processor="otsu", file=None))
    put_model(s3, settings.bucket, "person")  # clash: the baked-in person wins
    put(s3, settings.bucket, "mine/extra/deep.txt", b"not part of the layout")
    put(s3, settings.bucket, "Bad Name/card.json", card("bad"))  # a folder that breaks the naming rule is ignored

    r = s3_api.get("/v1/models")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(m["name"], m["origin"]) for m in body["models"]] == [
        ("classic", "s3"),
        ("mine", "s3"),
        ("person", "baked_in"),
        ("text", "baked_in"),
    ]
    by_name = {m["name"]: m for m in body["models"]}
    assert by_name["person"]["title"] == "person test model"  # the baked-in card, not the S3 one
    assert by_name["mine"]["version"] == "2" and "file" not in by_name["mine"]
    assert body["s3"]["uri"] == f"s3://{settings.bucket}/{PREFIX}"
    assert body["s3"]["error"] is None and body["s3"]["read_at"] > 0
    assert list(body["s3"]["rejected"]) == ["person"]
    assert "baked-in model of the same name wins" in body["s3"]["rejected"]["person"]


def test_without_a_prefix_the_list_is_the_baked_in_one(api: TestClient) -> None:
    body = api.get("/v1/models").json()
    assert [(m["name"], m["origin"]) for m in body["models"]] == [("person", "baked_in"), ("text", "baked_in")]
    assert body["s3"] is None


def test_jobs_for_an_s3_model_are_accepted(s3_api: TestClient, s3: Any, settings: Settings) -> None:
    put_model(s3, settings.bucket, "mine")
    r = post_images(s3_api, image_bytes(), model="mine")
    assert r.status_code == 202, r.text
    r = s3_api.post("/v1/uploads", json={"files": [{"file_name": "big.png"}], "model": "mine"})
    assert r.status_code == 201, r.text
    jobs = stored(settings)["jobs"]
    assert len(jobs) == 2
    assert {j["model"]["S"] for j in jobs.values()} == {"mine"}


@pytest.mark.parametrize(
    ("name", "files", "reason"),
    [
        ("badjson", {"card.json": b"{not json"}, "not valid JSON"),
        ("badutf", {"card.json": b"\xff\xfe{}", "model.onnx": b"x"}, "UTF-8"),
        ("noclass", {"card.json": card("noclass", classes=[]), "model.onnx": b"x"}, "classes"),
        ("wrongname", {"card.json": card("other"), "model.onnx": b"x"}, "must match its folder name"),
        ("bigid", {"card.json": card("bigid", classes=[{"id": 300, "name": "x"}]), "model.onnx": b"x"}, "255"),
        ("noweights", {"card.json": card("noweights")}, "noweights/model.onnx is missing"),
        ("badfile", {"card.json": card("badfile", file="../x.onnx"), "model.onnx": b"x"}, "plain file name"),
        ("nocard", {"model.onnx": b"x"}, "card.json is missing"),
    ],
)
def test_a_broken_s3_model_is_not_listed_and_its_jobs_are_refused(
    s3_api: TestClient, s3: Any, settings: Settings, name: str, files: dict[str, Any], reason: str
) -> None:
    put_model(s3, settings.bucket, "mine")
    for file, body in files.items():
        put(s3, settings.bucket, f"{name}/{file}", body)

    body = s3_api.get("/v1/models").json()
    assert [m["name"] for m in body["models"]] == ["mine", "person", "text"]
    assert reason in body["s3"]["rejected"][name]

    r = post_images(s3_api, image_bytes(), model=name)
    assert r.status_code == 422 and problem_type(r) == "unknown_model", r.text
    assert reason in r.json()["detail"] and "available: mine, person, text" in r.json()["detail"]
    r = s3_api.post("/v1/uploads", json={"files": [{"file_name": "a.png"}], "model": name})
    assert r.status_code == 422 and problem_type(r) == "unknown_model", r.text
    assert stored(settings)["jobs"] == {}


def test_a_new_model_is_usable_without_a_restart_and_unchanged_cards_are_not_read_again(
    s3_api: TestClient, s3: Any, settings: Settings, flaky: Flaky
) -> None:
    assert post_images(s3_api, image_bytes(), model="mine").status_code == 422
    put_model(s3, settings.bucket, "mine")
    assert post_images(s3_api, image_bytes(), model="mine").status_code == 202
    reads = flaky.calls["get_object"]
    assert s3_api.get("/v1/models").status_code == 200
    assert flaky.calls["get_object"] == reads  # same ETag: the card is not fetched again
    put(s3, settings.bucket, "mine/card.json", card("mine", version="3"))
    versions = {m["name"]: m["version"] for m in s3_api.get("/v1/models").json()["models"]}
    assert versions["mine"] == "3"
    assert flaky.calls["get_object"] == reads + 1


def test_the_cards_are_cached_so_uploads_do_not_read_s3(s3_settings: Settings, s3: Any, flaky: Flaky) -> None:
    put_model(s3, s3_settings.bucket, "mine")
    cached = s3_settings.model_copy(update={"models_s3_cache_s": 60.0})
    with TestClient(create_app(cached, s3=flaky), headers=AUTH) as api:
        for i in range(3):
            assert post_images(api, image_bytes(seed=i), model="mine").status_code == 202
            assert post_images(api, image_bytes(seed=i), model="person").status_code == 202
        assert api.get("/v1/models").status_code == 200
    assert flaky.calls == Counter({"list_objects_v2": 1, "get_object": 1})


def test_cache_time_decides_when_a_new_card_is_seen(s3_settings: Settings, s3: Any) -> None:
    now = [1000.0]
    cards = S3Cards(s3, s3_settings.models_s3_uri or "", ttl_s=60.0, clock=lambda: now[0])
    assert cards.listing().cards == {}
    put_model(s3, s3_settings.bucket, "mine")
    now[0] += 59.0
    assert cards.listing().cards == {}
    now[0] += 2.0
    assert list(cards.listing().cards) == ["mine"]


def test_s3_down_serves_the_last_good_list_and_baked_in_models_keep_working(
    s3_api: TestClient, s3: Any, settings: Settings, flaky: Flaky
) -> None:
    put_model(s3, settings.bucket, "mine")
    assert s3_api.get("/v1/models").status_code == 200
    flaky.down = True

    r = s3_api.get("/v1/models")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [m["name"] for m in body["models"]] == ["mine", "person", "text"]  # stale, but listed
    assert "could not be read" in body["s3"]["error"] and body["s3"]["read_at"] > 0
    assert post_images(s3_api, image_bytes(), model="person").status_code == 202
    assert post_images(s3_api, image_bytes(), model="mine").status_code == 202  # from the last good read
    r = post_images(s3_api, image_bytes(), model="newer")  # maybe uploaded since: cannot tell, so retry later
    assert r.status_code == 503 and problem_type(r) == "models_unavailable", r.text
    assert r.headers["Retry-After"]
    assert len(stored(settings)["jobs"]) == 2

    flaky.down = False
    put_model(s3, settings.bucket, "newer")
    assert post_images(s3_api, image_bytes(), model="newer").status_code == 202
    assert s3_api.get("/v1/models").json()["s3"]["error"] is None


def test_s3_down_from_the_start_lists_the_baked_in_models(s3_settings: Settings, flaky: Flaky) -> None:
    flaky.down = True
    with TestClient(create_app(s3_settings, s3=flaky), headers=AUTH) as api:
        r = api.get("/v1/models")
        assert r.status_code == 200, r.text
        assert [m["name"] for m in r.json()["models"]] == ["person", "text"]
        assert r.json()["s3"]["read_at"] is None and r.json()["s3"]["error"]
        assert post_images(api, image_bytes(), model="text").status_code == 202
        assert post_images(api, image_bytes(), model="mine").status_code == 503


def test_a_malformed_uri_is_reported_and_baked_in_models_work(api_settings: Settings) -> None:
    bad = api_settings.model_copy(update={"models_s3_uri": "https://bucket/models/"})
    with TestClient(create_app(bad), headers=AUTH) as api:
        body = api.get("/v1/models").json()
        assert [m["name"] for m in body["models"]] == ["person", "text"]
        assert "must look like s3://bucket/prefix/" in body["s3"]["error"]
        assert post_images(api, image_bytes(), model="person").status_code == 202
        r = post_images(api, image_bytes(), model="mine")
        assert r.status_code == 503 and "must look like s3://bucket/prefix/" in r.json()["detail"]


def test_while_one_request_reads_s3_the_others_get_the_last_list_at_once(s3_settings: Settings, s3: Any) -> None:
    class Slow(Flaky):
        """Blocks the listing until released, like an S3 call that hangs until its timeout."""

        def __init__(self, real: Any) -> None:
            super().__init__(real)
            self.entered, self.release = threading.Event(), threading.Event()

        def list_objects_v2(self, **kwargs: Any) -> Any:
            if self.down:
                self.entered.set()
                self.release.wait(10)
            return self._real.list_objects_v2(**kwargs)

    put_model(s3, s3_settings.bucket, "mine")
    slow = Slow(s3)
    cards = S3Cards(slow, s3_settings.models_s3_uri or "", ttl_s=0.0)
    assert list(cards.listing().cards) == ["mine"]
    put_model(s3, s3_settings.bucket, "newer")
    slow.down = True
    refresher = threading.Thread(target=cards.listing)
    refresher.start()
    assert slow.entered.wait(10)
    assert list(cards.listing().cards) == ["mine"]  # did not wait for the hanging read
    slow.release.set()
    refresher.join(10)
    slow.down = False
    assert list(cards.listing().cards) == ["mine", "newer"]


def test_an_s3_error_is_shown_by_its_code_never_by_its_text(
    s3_api: TestClient, s3_settings: Settings, flaky: Flaky
) -> None:
    """botocore's AccessDenied message names the account and role: the listing and the 503 carry the code only."""
    flaky.down, flaky.error = True, access_denied("ListObjectsV2", "s3:ListBucket")
    listing = s3_api.get("/v1/models").json()["s3"]
    assert listing["error"].endswith("could not be read (AccessDenied on ListObjectsV2)")
    assert not leaks(json.dumps(listing))
    r = post_images(s3_api, image_bytes(), model="mine")
    assert r.status_code == 503 and "AccessDenied" in r.json()["detail"] and not leaks(r.text)
