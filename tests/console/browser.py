"""Debian's Chromium, driven through chromedriver for the console's browser tests: started
headless with a fresh profile and no background networking, and the form sign-in a person
does.  Never a downloaded browser; the tests skip, saying why, without Chromium."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.harness import PASSWORDS

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
NEEDS_CHROMIUM = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's Chromium: apt-get install -y chromium chromium-driver",
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
)


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A headless Chromium with its own profile directory, quit afterwards."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (a dev dependency)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        browser.set_page_load_timeout(30)
        yield browser
    finally:
        browser.quit()


def sign_in_form(browser: Any, wait: Any, user: str = "ana") -> None:
    """Fill the sign-in form the browser is on and submit it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    wait.until(expected_conditions.presence_of_element_located((By.ID, "login-user")))
    browser.find_element(By.ID, "login-user").send_keys(user)
    browser.find_element(By.ID, "login-password").send_keys(PASSWORDS[user])
    browser.find_element(By.ID, "login-submit").click()
