"""The web page in a real browser: Debian's chromium driven by playwright.

CI installs chromium (apt) and playwright (pip); elsewhere the test is skipped if chromium is
missing. Playwright's own browser download is never used.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

import vidseek  # noqa: E402
import vidseek.service  # noqa: E402
from conftest import LiveServer  # noqa: E402
from vidseek.server import create_app  # noqa: E402

SCREENSHOTS = Path(__file__).resolve().parents[1] / ".cache" / "screenshots"


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed")
    return found


@pytest.fixture(scope="module")
def page_server(tmp_path_factory, trained_encoder_dir, media):
    root = tmp_path_factory.mktemp("page")
    with vidseek.Archive.open(root / "archive", model=trained_encoder_dir, device="cpu") as archive:
        archive.ingest([media])
        archive.jobs.enqueue(str(root / "incoming.mp4"), 1, 1, source="api")  # a pending job to show
    with LiveServer(create_app(vidseek.service.ServiceSettings(archive=root / "archive", device="cpu"))) as server:
        yield server


def test_search_renders_cards_and_a_click_plays_the_moment(page_server):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            console_errors: list[str] = []
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("response", lambda r: console_errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.goto(page_server.url + "/")
            # the status panel: archive figures and the job list
            page.wait_for_selector("#archive-status dd")
            assert page.inner_text("#archive-status dd >> nth=0") == "3"  # videos
            page.wait_for_selector('[data-testid="job"]')
            assert "pending" in page.inner_text("#jobs") and "incoming.mp4" in page.inner_text("#jobs")

            page.fill("#query", "bikes on a street")
            page.select_option("#top-k", "5")
            page.click("#search-button")
            page.wait_for_selector('[data-testid="result-card"]')
            cards = page.locator('[data-testid="result-card"]')
            assert 1 <= cards.count() <= 5
            names = {"bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"}
            for n in range(cards.count()):
                card = cards.nth(n)
                assert card.locator(".name").inner_text() in names
                assert " – " in card.locator(".range").inner_text()
                assert card.locator(".score").inner_text().startswith("score ")
            page.wait_for_function(  # every thumbnail really decoded
                "() => [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
            assert "moments for" in page.inner_text("#message")

            first = cards.nth(0)
            first.click()
            assert page.is_visible("#player")
            src = page.get_attribute("#player", "src")
            assert src and src.startswith("/api/videos/") and src.endswith("/media")
            # the player loads the file through the Range-capable media endpoint and seeks
            page.wait_for_function("() => document.getElementById('player').readyState >= 1",
                                   timeout=20_000)
            start = float(first.get_attribute("data-start"))
            page.wait_for_function(
                f"() => Math.abs(document.getElementById('player').currentTime - {start}) < 1.5")
            caption = page.inner_text("#player-caption")
            assert first.locator(".name").inner_text() in caption
            assert "playing" in (first.get_attribute("class") or "")
            page.screenshot(path=str(SCREENSHOTS / "search-page.png"), full_page=True)

            # object query: drag a box over the paused frame, object hits show their box
            page.click("#object-button")
            assert page.is_visible("#draw-layer")
            stage = page.locator("#draw-layer").bounding_box()
            page.mouse.move(stage["x"] + stage["width"] * 0.35, stage["y"] + stage["height"] * 0.3)
            page.mouse.down()
            page.mouse.move(stage["x"] + stage["width"] * 0.65, stage["y"] + stage["height"] * 0.7, steps=5)
            page.mouse.up()
            page.wait_for_selector('[data-kind="object"]')
            assert "moments for" in page.inner_text("#message")
            marks = page.locator('[data-testid="hit-box"]')
            assert marks.count() == page.locator('[data-testid="result-card"]').count() >= 1
            page.wait_for_function(
                "() => [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(SCREENSHOTS / "object-search.png"), full_page=True)

            # a blank query is refused on the page, an API error is shown, not thrown
            page.fill("#query", "   ")
            page.click("#search-button")
            assert "Type what you are looking for" in page.inner_text("#message")
            assert not console_errors, console_errors
        finally:
            browser.close()
    assert (SCREENSHOTS / "search-page.png").stat().st_size > 10_000
