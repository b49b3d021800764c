"""A real headless Chromium for browser tests: Debian's ``chromium`` and ``chromium-driver`` packages,
driven by selenium with explicit paths, so selenium never downloads a browser or a driver.

Without the packages the tests are skipped with the reason, except under ``CI=true`` where they fail:
CI must install them (``apt-get install -y chromium chromium-driver``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

CHROMIUM = Path(os.environ.get("CUSTODY_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CUSTODY_CHROMEDRIVER", "/usr/bin/chromedriver"))
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
)


def require_chromium() -> None:
    """Skip (or, under CI=true, fail) unless selenium, Chromium and ChromeDriver are all present."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -r requirements-dev.txt)")
    if missing:
        reason = f"browser test needs {', '.join(missing)}: apt-get install -y chromium chromium-driver"
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)


@contextmanager
def headless_chromium(profile_dir: Path) -> Iterator[Any]:
    """A selenium WebDriver on a headless Chromium with a throw-away profile in ``profile_dir``."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (*CHROMIUM_ARGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
