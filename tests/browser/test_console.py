"""The web console in a real headless Chromium against the real local stack (moto, API, pipe, workers).

Five real photos and one hostile file go in through the page: the hostile one is refused with the API's reason,
shown as text; the five reach SUCCEEDED; one job is opened and its mask shown; the CSV is downloaded; the report
link appears once the results task wrote the report. A screenshot of the gallery is kept under ``.segscale/``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import skimage.data
from PIL import Image

from local.dev import LocalStack
from local.procs import REPO_ROOT
from runtime.results.report import build_report
from tests.e2e.conftest import StackFactory, job_store
from tests.e2e.photos import photo_folder

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.browser]

HOSTILE_NAME = "<img src=x onerror=alert(1)>.jpg"
SCREENSHOT = REPO_ROOT / ".segscale" / "console-gallery.png"
LARGE_NAME = "chelsea_large.bmp"  # over the console's 8 MiB threshold: goes through the presigned flow
FINISH_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def stack(make_stack: StackFactory) -> LocalStack:
    return make_stack(max_workers=2, reconcile_interval_s=5.0, settings={"batch_window_s": "0.2"})


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Five real photos (one a 10 MB BMP) and a text file with a file name made to inject HTML."""
    folder = tmp_path_factory.mktemp("photos")
    photo_folder(folder)
    chelsea = Image.fromarray(skimage.data.chelsea())
    chelsea.resize((chelsea.width * 5, chelsea.height * 5), Image.Resampling.BICUBIC).save(folder / LARGE_NAME)
    (folder / HOSTILE_NAME).write_text("this is not an image, whatever its name says")
    paths = [folder / "grace_hopper.jpg", folder / "astronaut.png", folder / "scenes" / "rocket.jpg"]
    paths += [folder / "scenes" / "coffee.jpg", folder / LARGE_NAME, folder / HOSTILE_NAME]
    assert (folder / LARGE_NAME).stat().st_size > 8 * 1024 * 1024
    return {p.name: p for p in paths}


@dataclass
class Watched:
    """What the page did that it must not: dialogs (an injected alert), policy violations, the key in a URL."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def violations(self) -> list[str]:
        return self.page.evaluate("window.__violations")  # type: ignore[no-any-return]


VIOLATION_RECORDER = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
    window.__violations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture()
def console(browser: Any, stack: LocalStack, request: pytest.FixtureRequest) -> Iterator[Watched]:
    options = getattr(request, "param", {})
    context = browser.new_context(accept_downloads=True, **options)
    page = context.new_page()
    page.set_default_timeout(30_000)
    watched = Watched(page)
    page.add_init_script(VIOLATION_RECORDER)
    page.on("dialog", lambda dialog: (watched.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda req: watched.requests.append((req.url, req.headers)))
    page.goto(stack.api_url + "/")
    yield watched
    context.close()


def enter_key(page: Any, key: str) -> None:
    from playwright.sync_api import expect

    page.get_by_role("textbox", name=re.compile(r"^API key")).fill(key)
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#key-status")).to_contain_text("Key accepted")


def api_reason(stack: LocalStack, name: str, data: bytes) -> str:
    """What the console should show for a refused file: the API's title and the file's own reason."""
    r = httpx.post(
        f"{stack.api_url}/v1/images", files={"file": (name, data)}, headers={"X-Api-Key": stack.api_key}, timeout=30
    )
    assert r.status_code == 415, r.text
    problem = r.json()
    return f"{problem['title']}: {problem['errors'][0]['detail']}"


def test_upload_watch_inspect_and_export(console: Watched, stack: LocalStack, photos: dict[str, Path]) -> None:
    from playwright.sync_api import expect

    page = console.page
    enter_key(page, stack.api_key)
    expect(page.locator("#model option:checked")).to_have_attribute("value", "person")
    # The photos through the file picker, then the hostile file dropped onto the page.
    page.locator("#file-input").set_input_files([p for name, p in photos.items() if name != HOSTILE_NAME])
    hostile_bytes = photos[HOSTILE_NAME].read_bytes()
    dropped = page.evaluate_handle(
        "([name, text]) => { const dt = new DataTransfer();"
        " dt.items.add(new File([text], name, {type: 'image/jpeg'})); return dt; }",
        [HOSTILE_NAME, hostile_bytes.decode()],
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})

    # The hostile file: refused with the API's own words, its name shown as text, nothing injected.
    rejected = page.locator(".file.rejected")
    expect(rejected).to_have_count(1)
    expect(rejected.locator(".name")).to_have_text(HOSTILE_NAME)
    expect(rejected.locator(".reason")).to_have_text(api_reason(stack, HOSTILE_NAME, hostile_bytes))
    assert page.locator('img[src="x"]').count() == 0 and console.dialogs == []

    # The five photos: live progress until all succeeded, each with its overlay and measurements in the gallery.
    expect(page.locator("#batch-counts")).to_contain_text("5 of 5 finished: 5 succeeded", timeout=FINISH_TIMEOUT_MS)
    cards = page.locator("#gallery .card")
    expect(cards).to_have_count(5)
    page.wait_for_function(
        "() => { const imgs = [...document.querySelectorAll('#gallery img')];"
        " return imgs.length === 5 && imgs.every((i) => i.complete && i.naturalWidth > 0); }"
    )
    grace = cards.filter(has_text="grace_hopper.jpg")
    expect(grace).to_contain_text(re.compile(r"person: \d+\.\d %"))
    expect(page.locator('.file[data-method="presigned"] .name')).to_have_text(LARGE_NAME)
    batch_id = page.locator("#batch-id").inner_text()
    jobs = {j["file_name"]: j for j in job_store(stack).iter_batch(batch_id)}
    assert sorted(jobs) == sorted(n for n in photos if n != HOSTILE_NAME)
    assert jobs[LARGE_NAME]["input_key"].endswith(".bin")  # the presigned flow stored it, not the multipart route
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.locator("#batch-section").screenshot(path=str(SCREENSHOT))

    # One job: overlay first, then the mask (the full-size label image), then Escape closes the dialog.
    grace.click()
    dialog = page.locator("#job-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#job-title")).to_have_text("grace_hopper.jpg")
    expect(page.locator("#job-measurements tbody tr").first).to_contain_text(re.compile(r"^person\s*\d+\.\d %"))
    image = page.locator("#job-image")
    expect(image).to_have_attribute("data-kind", "overlay")
    page.get_by_label("Mask", exact=True).check()
    expect(image).to_have_attribute("data-kind", "mask")
    expect(image).to_have_attribute("src", re.compile(r"/mask\.[a-z]+\?"))
    page.wait_for_function(
        "() => { const i = document.getElementById('job-image'); return i.complete && i.naturalWidth > 0; }"
    )
    assert image.evaluate("i => i.naturalWidth") == int(jobs["grace_hopper.jpg"]["width"])
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # The CSV, as a download: one row per accepted photo, with the measurements.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    assert download.value.suggested_filename == f"segscale-{batch_id}.csv"
    with Path(download.value.path()).open() as f:
        rows = {r["file_name"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == sorted(jobs) and {r["status"] for r in rows.values()} == {"SUCCEEDED"}
    assert float(rows["grace_hopper.jpg"]["person_fraction"]) > 0.15
    assert float(rows["rocket.jpg"]["person_fraction"]) < 0.05

    # The report: the API says how to make it; once the results task wrote it, the page links to it.
    page.get_by_role("button", name="HTML report").click()
    expect(page.locator("#export-status")).to_contain_text("has no report yet")
    build_report(stack.settings, batch_id)
    page.get_by_role("button", name="HTML report").click()
    link = page.get_by_role("link", name="Open the report")
    expect(link).to_be_visible()
    assert "grace_hopper.jpg" in httpx.get(link.get_attribute("href") or "", timeout=30).text

    assert console.dialogs == [] and console.violations() == []
    key_in_url = [url for url, _ in console.requests if stack.api_key in url]
    key_elsewhere = [url for url, h in console.requests if "x-api-key" in h and not url.startswith(stack.api_url)]
    assert key_in_url == [] and key_elsewhere == []


def test_the_policy_holds_in_the_browser(console: Watched, stack: LocalStack) -> None:
    """HTML from a string throws (Trusted Types), injected script does not run, other origins cannot be reached."""
    page = console.page
    outcome = page.evaluate(
        """async (otherOrigin) => {
            const out = {};
            try { document.body.innerHTML = '<img src=x onerror=alert(1)>'; out.html = 'assigned'; }
            catch (e) { out.html = e.name; }
            const script = document.createElement('script');
            try { script.textContent = 'window.__ran = true'; document.body.append(script); } catch (e) {}
            out.ran = window.__ran === true;
            try { await fetch(otherOrigin, {mode: 'no-cors'}); out.fetch = 'reached'; }
            catch (e) { out.fetch = e.name; }
            return out;
        }""",
        "http://localhost:9/",
    )
    assert outcome == {"html": "TypeError", "ran": False, "fetch": "TypeError"}
    page.wait_for_function("() => window.__violations.some((v) => v.startsWith('connect-src'))")
    assert console.dialogs == []


@pytest.mark.parametrize("console", [{"viewport": {"width": 375, "height": 740}, "is_mobile": True}], indirect=True)
def test_phone_width_keyboard_only_and_a_folder(
    console: Watched, stack: LocalStack, photos: dict[str, Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page = console.page
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "api-key"
    page.keyboard.type(stack.api_key)
    page.keyboard.press("Enter")
    expect(page.locator("#key-status")).to_contain_text("Key accepted")
    page.reload()  # the key is kept for this tab (sessionStorage): no need to type it again
    expect(page.locator("#key-status")).to_contain_text("Key accepted")

    # A folder: only its images are sent (not the notes, not the hidden file).
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "astronaut.png").write_bytes(photos["astronaut.png"].read_bytes())
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.jpg").write_bytes(photos["rocket.jpg"].read_bytes())
    page.locator("#folder-input").set_input_files(folder)
    expect(page.locator("#export-status")).to_contain_text("2 file(s) of the folder skipped")
    expect(page.locator(".file .name")).to_have_text(["astronaut.png"])
    expect(page.locator("#batch-counts")).to_contain_text("1 of 1 finished: 1 succeeded", timeout=FINISH_TIMEOUT_MS)
    card = page.locator("#gallery .card")
    card.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#job-dialog")).to_be_visible()
    page.locator('input[name="job-view"][value="overlay"]').focus()
    page.keyboard.press("ArrowRight")  # radio group: the arrow keys choose
    expect(page.locator("#job-image")).to_have_attribute("data-kind", "mask")
    page.keyboard.press("Escape")
    expect(page.locator("#job-dialog")).to_be_hidden()
    assert page.evaluate("document.activeElement.dataset.jobId") == card.get_attribute("data-job-id")

    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at phone width"
    assert console.violations() == []
