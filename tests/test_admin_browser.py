"""A compliance officer walks through the lineage admin in a real headless Chromium, against a live server.

Screenshots of the pages land in the temporary directory (``/tmp/custody-admin-*.png`` by default).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import headless_chromium
from tests.test_admin import evidence_events

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = Path(os.environ.get("CUSTODY_SCREENSHOT_DIR", tempfile.gettempdir()))
DATASET = "instance.schema.table"
RUN_ID = "ea041791-68bc-4ae1-bd89-4c8106a157e4"
ADMIN_HEADER_BLUE = "rgba(65, 118, 144, 1)"  # Django admin's --header-bg: proof that its CSS loaded


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with headless_chromium(tmp_path / "chromium-profile") as driver:
        yield driver


def test_compliance_officer_reviews_lineage_in_a_browser(
    live_server: Any, browser: Any, make_user: Callable[..., Any], post_event: Callable[..., Any]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    for event in evidence_events():
        assert post_event(event).status_code == 201
    make_user("olga", roles=("compliance_officer",), is_staff=True)
    from selenium.common.exceptions import StaleElementReferenceException

    # A page can be replaced between finding an element and reading it (after a click that
    # navigates): try again rather than fail.
    wait = WebDriverWait(browser, 20, ignored_exceptions=(StaleElementReferenceException,))

    def page_shows(text: str) -> None:  # case-insensitive: the admin CSS upper-cases some headings
        wait.until(lambda driver: text.lower() in driver.find_element(By.TAG_NAME, "body").text.lower())

    def click(link_text: str) -> None:
        wait.until(ec.element_to_be_clickable((By.LINK_TEXT, link_text))).click()

    def assert_read_only() -> None:
        selector = "a.addlink, a.deletelink, input[name=_save], input[name=_continue], select[name=action]"
        buttons = browser.find_elements(By.CSS_SELECTOR, selector)
        assert not buttons, [b.get_attribute("outerHTML") for b in buttons]
        labels = {e.text.strip() for e in browser.find_elements(By.CSS_SELECTOR, "a, button, input[type=submit]")}
        labels |= {e.get_attribute("value") for e in browser.find_elements(By.CSS_SELECTOR, "input[type=submit]")}
        assert not any(label and label.split()[0] in {"Add", "Save"} for label in labels), labels

    def screenshot(name: str) -> Path:
        path = SCREENSHOTS / f"custody-admin-{name}.png"
        assert browser.save_screenshot(str(path)), path
        return path

    # Log in through the form.
    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    browser.find_element(By.ID, "id_username").send_keys("olga")
    browser.find_element(By.ID, "id_password").send_keys("pw-olga")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    page_shows("Lineage")
    header = browser.find_element(By.ID, "header")
    assert header.value_of_css_property("background-color") == ADMIN_HEADER_BLUE, "the admin CSS did not load"
    assert_read_only()
    screenshot("index")

    # Datasets: search for one from an example event and open it.
    click("Datasets")
    page_shows("Select dataset to view")
    search = browser.find_element(By.ID, "searchbar")
    search.send_keys("instance.schema.ta")
    search.submit()
    page_shows("1 result")
    assert_read_only()
    click(DATASET)
    page_shows("View dataset")
    assert DATASET in browser.title or DATASET in browser.find_element(By.TAG_NAME, "body").text
    assert "column2" in browser.find_element(By.CSS_SELECTOR, "pre.custody-json").text  # schema fields
    assert_read_only()
    screenshot("dataset")

    # Its versions, then the version the later run wrote, then that run.
    click("Versions")
    page_shows("Select dataset version to view")
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) >= 2
    assert_read_only()
    screenshot("versions")
    browser.find_element(By.CSS_SELECTOR, "#result_list tbody tr th a").click()
    page_shows("View dataset version")
    assert_read_only()

    # A raw event: the events of the run that produced the example, then the first of them.
    browser.get(f"{live_server.url}/admin/lineage/rawevent/?q={RUN_ID}")
    page_shows("Select raw event to view")
    browser.find_element(By.CSS_SELECTOR, "#result_list tbody tr th a").click()
    page_shows("View raw event")
    payload = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "pre.custody-json")))
    assert f'"runId": "{RUN_ID}"' in payload.text
    assert '"eventType"' in payload.text
    assert browser.find_element(By.ID, "header").value_of_css_property("background-color") == ADMIN_HEADER_BLUE
    assert_read_only()
    shot = screenshot("raw-event")
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
