"""A person at a browser: Playwright's Python API driving Debian's headless ``chromium``.

Playwright's own browser download does not work here, so it launches the system binary
(``executable_path``). Without chromium the tests that need it skip, except in CI where they fail.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def require_chromium() -> str:
    binary = chromium_path()
    if binary is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chromium is missing in CI (make test installs it when run as root)")
        pytest.skip("chromium not installed (make test installs it when run as root)")
    return binary


def launch(playwright):
    """A headless Chromium browser (close it when done)."""
    return playwright.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)


def sign_in(page, airflow_url: str, user: str, password: str) -> None:
    """Log in through Airflow's login form, as a person does."""
    page.goto(f"{airflow_url}/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{airflow_url}/**")
    page.get_by_role("button", name="Browse").wait_for()
