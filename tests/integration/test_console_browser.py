"""The web console in a real headless Chromium (Debian's chromium, driven by its chromedriver
through selenium: no browser is downloaded), against a real worker on the broker: log in, load each
page, search a member, open a customer, type an invalid then a valid definition, publish it, and
see the new segment appear with its members. Saves a screenshot of each page into docs/console/
(SEGMENTS_CONSOLE_SCREENSHOTS=0 skips that)."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .console_worker import HOSTILE_ID, TOKEN, start_console_worker

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as seen  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
pytestmark = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                reason="needs Debian's chromium and chromium-driver (scripts/install-test-tools.sh)")


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _shot(driver: webdriver.Chrome, name: str) -> None:
    """The whole page (up to 2,400 px tall) as docs/console/<name>.png."""
    if os.environ.get("SEGMENTS_CONSOLE_SCREENSHOTS", "1") == "0":
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": min(max(height, 600), 2400), "deviceScaleFactor": 1,
                            "mobile": False})
    try:
        driver.save_screenshot(str(SHOTS / f"{name}.png"))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _no_script_ran(driver: webdriver.Chrome) -> None:
    """The hostile customer id's onerror never ran: no alert is open, no <img> came from it."""
    assert not driver.find_elements(By.CSS_SELECTOR, "main img")
    try:
        alert = driver.switch_to.alert
    except Exception:       # NoAlertPresentException: what must happen
        return
    text = alert.text
    alert.dismiss()
    raise AssertionError(f"a script ran: alert {text!r}")


def test_a_marketer_session_in_chromium(kafka_bootstrap, tmp_path, browser):
    started = time.monotonic()
    console, running = start_console_worker(kafka_bootstrap, tmp_path, held_back=0.5)
    wait = WebDriverWait(browser, 60)
    try:
        browser.get(console.base + "/console/segments")
        assert browser.current_url.endswith("/console/login")
        _shot(browser, "login")
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "login").click()
        wait.until(seen.url_contains("/console/segments"))
        console.feed_the_rest()           # the second half of the shoppers' history: the charts move
        browser.refresh()
        assert browser.find_element(By.TAG_NAME, "h1").text == "Segments"
        assert "loyal" in browser.find_element(By.CSS_SELECTOR, "table.segments").text
        assert browser.find_elements(By.CSS_SELECTOR, "table.segments svg.chart")

        # a segment's members: search by customer id, open a customer
        browser.find_element(By.LINK_TEXT, "loyal").click()
        wait.until(seen.presence_of_element_located((By.ID, "member-search")))
        rows = browser.find_elements(By.CSS_SELECTOR, "table.members tbody tr")
        assert rows, "loyal has members"
        member = rows[-1].find_element(By.CSS_SELECTOR, "td a").text
        search = browser.find_element(By.ID, "member-search")
        search.send_keys(member)
        search.submit()
        wait.until(seen.url_contains("q="))
        found = [r.find_element(By.CSS_SELECTOR, "td a").text
                 for r in browser.find_elements(By.CSS_SELECTOR, "table.members tbody tr")]
        assert member in found and all(member in f for f in found)
        _shot(browser, "segment")
        browser.find_element(By.LINK_TEXT, member).click()
        wait.until(seen.text_to_be_present_in_element((By.TAG_NAME, "h1"), f"Customer {member}"))
        assert "loyal" in browser.find_element(By.CSS_SELECTOR, "table.current").text
        assert browser.find_elements(By.CSS_SELECTOR, "ul.conditions li")
        _shot(browser, "customer")

        # the hostile customer id renders as text, and nothing of it runs
        browser.get(console.base + "/console/customers")
        box = browser.find_element(By.ID, "customer-id")
        box.send_keys(HOSTILE_ID)
        box.submit()
        wait.until(seen.text_to_be_present_in_element((By.TAG_NAME, "h1"), HOSTILE_ID))
        _no_script_ran(browser)

        # the editor: invalid, then valid, then published
        browser.get(console.base + "/console/editor")
        name = browser.find_element(By.ID, "segment-name")
        name.send_keys("big-spenders")
        text = browser.find_element(By.ID, "definition")
        text.clear()
        text.send_keys("when:\n  paid_total: {gte: lots}\n")
        wait.until(seen.text_to_be_present_in_element((By.ID, "problems"), "paid_total"))
        assert "problems" in browser.find_element(By.ID, "problems").get_attribute("class")
        _shot(browser, "editor-invalid")
        text.clear()
        text.send_keys("description: paid 20,000 or more in all\nwhen:\n  paid_total: {gte: 20000}\n")
        wait.until(seen.text_to_be_present_in_element((By.ID, "problems"), "valid"))
        wait.until(seen.text_to_be_present_in_element((By.ID, "preview"), "would hold"))
        holding = int(browser.find_element(By.ID, "preview").text.split()[2].replace(",", ""))
        assert holding > 0
        _shot(browser, "editor")
        browser.find_element(By.ID, "publish").click()
        wait.until(seen.text_to_be_present_in_element((By.ID, "outcome"), "version 1 published"))

        # the worker takes it up: the segment appears, with the members the preview counted
        deadline = time.monotonic() + 60
        while True:
            browser.get(console.base + "/console/segments")
            cells = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "table.segments tbody tr")]
            row = next((c for c in cells if c.startswith("big-spenders")), None)
            if row is not None and row.split()[1].replace(",", "") == str(holding):
                break
            assert time.monotonic() < deadline, f"big-spenders not taken up with {holding} members: {cells}"
            time.sleep(0.5)
        browser.find_element(By.LINK_TEXT, "big-spenders").click()
        wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "table.members")))
        assert len(browser.find_elements(By.CSS_SELECTOR, "table.members tbody tr")) == min(holding, 50)
        _no_script_ran(browser)

        # a size sample every 10 s: the size charts draw once a segment has two
        deadline = time.monotonic() + 30
        while True:
            browser.get(console.base + "/console/segments")
            if len(browser.find_elements(By.CSS_SELECTOR, "table.segments polyline")) >= 9:
                break
            assert time.monotonic() < deadline, "no size chart drawn within 30 s"
            time.sleep(1)
        _shot(browser, "segments")
    finally:
        running.__exit__(None, None, None)
    print(f"console browser session: {time.monotonic() - started:.1f} s")
