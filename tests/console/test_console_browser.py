"""The console in a real browser: Debian's Chromium, headless, driven by Selenium through
Debian's chromedriver (never a downloaded browser).  Skips, saying why, without them; CI
installs both (.ci/run)."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from console.browser import CHROMIUM, NEEDS_CHROMIUM, chromium, sign_in_form
from console.harness import Console, StartConsole
from monitor.model import Item

HOSTILE = "<script>document.title='owned'</script>Tungsten tender in Karaganda"

pytest.importorskip("selenium.webdriver", reason="selenium (a dev dependency)")
pytestmark = NEEDS_CHROMIUM


def drive(url: str, profile: Path, screenshot: Path) -> dict[str, str]:
    """Sign in through the form as a person would and read the stories page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    with chromium(profile) as browser:
        browser.get(f"{url}/stories")  # not signed in: sent to the form
        wait = WebDriverWait(browser, 20)
        sign_in_form(browser, wait)
        wait.until(expected_conditions.presence_of_element_located((By.ID, "stories")))
        link = browser.find_element(By.CSS_SELECTOR, "a.story-title")
        found = {
            "path": browser.current_url.removeprefix(url),
            "user": browser.find_element(By.ID, "user").text,
            "story": link.text,
            "title": browser.title,
        }
        link.click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "timeline")))
        found["story_page"] = browser.find_element(By.ID, "story-title").text
        browser.save_screenshot(str(screenshot))
        return found


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_an_analyst_signs_in_and_reads_the_stories_in_chromium(
    start_console: StartConsole, tmp_path: Path
) -> None:
    assert shutil.which(str(CHROMIUM))
    console: Console = await start_console()
    now = console.clock()
    await console.stores.stories.assign(
        Item(
            "b1",
            "wire",
            HOSTILE,
            "Bids for the Upper Kairakty deposit.",
            "https://wire.example/b1",
            now - timedelta(minutes=5),
            "en",
        ),
        now - timedelta(minutes=5),
    )
    shot = tmp_path / "story.png"
    found = await asyncio.to_thread(drive, console.url, tmp_path / "profile", shot)
    assert found["path"] == "/stories"
    assert found["user"] == "ana"
    assert found["story"] == HOSTILE  # shown as text: the script never ran
    assert found["title"] == "Stories · monitor console"
    assert found["story_page"] == HOSTILE
    assert shot.read_bytes().startswith(b"\x89PNG")
