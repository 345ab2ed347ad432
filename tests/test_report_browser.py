"""The statistics report in a real headless browser (Debian's chromium through
its chromedriver, with Selenium 4; `make test` installs them when it can):
the page loads from file:// with no console errors and shows every feature,
its plot and, with a baseline, the drift table. Skips without chromium or
chromedriver; with CI=true that is a failure."""

import os

import pytest

from featurebridge.transforms.report import load_run, write_report
from tests.engine_helpers import skip_or_fail
from tests.report_helpers import HOSTILE, write_analyzed

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless chromium for the module; never lets Selenium Manager download."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        skip_or_fail(f"the report's browser test needs {' and '.join(missing)}: "
                     "run `sudo apt-get install -y chromium chromium-driver` (or `make test` as root).")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail("the report's browser test needs selenium: pip install -e '.[test]'.")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver, path):
    """Loads the page; returns its SEVERE console entries (none expected)."""
    driver.get("file://" + os.path.abspath(path))
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def _check_features(driver, run):
    """Every feature of `run` has a visible section with a visible, drawn plot."""
    from selenium.webdriver.common.by import By

    shown = {}
    for section in driver.find_elements(By.CSS_SELECTOR, "section.feature"):
        key = (section.get_attribute("data-section"), section.get_attribute("data-feature"))
        assert key not in shown, key
        assert section.is_displayed(), key
        plot = section.find_element(By.CSS_SELECTOR, ".plot svg")
        assert plot.is_displayed() and plot.size["width"] > 100 and plot.size["height"] > 50, key
        shown[key] = section
    expected = {("raw", n) for n in run.raw} | {("transformed", n) for n in run.transformed}
    assert set(shown) == expected


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    current = str(tmp_path_factory.mktemp("current"))
    baseline = str(tmp_path_factory.mktemp("baseline"))
    write_analyzed(current, hostile=True)
    write_analyzed(baseline, seed=1, shift=0.5, drop=("city",))
    return current, write_report(current), write_report(current, baseline, output=os.path.join(current, "d.html"))


def test_page_shows_every_feature(browser, pages):
    from selenium.webdriver.common.by import By

    current, plain, _ = pages
    assert _open(browser, plain) == []
    assert browser.title == f"featurebridge statistics: {current}"  # the hostile values did not run
    _check_features(browser, load_run(current))
    assert not browser.find_elements(By.ID, "drift")
    for anchor in ("warnings", "label", "rejected", "raw", "transformed"):
        assert browser.find_element(By.ID, anchor).is_displayed()
    warnings = browser.find_element(By.ID, "warnings").text
    assert HOSTILE in warnings  # shown as text


def test_drift_table_with_a_baseline(browser, pages):
    from selenium.webdriver.common.by import By

    current, _, with_baseline = pages
    assert _open(browser, with_baseline) == []
    table = browser.find_element(By.CSS_SELECTOR, "#drift table")
    assert table.is_displayed()
    rows = table.find_elements(By.CSS_SELECTOR, "tr")[1:]
    run = load_run(current)
    assert len(rows) == len(run.raw) + len(run.transformed)  # city is only in this run: flagged in its row
    first = rows[0].find_elements(By.TAG_NAME, "td")
    assert first[5].text.startswith("drift")
    _check_features(browser, run)


def test_real_analyze_output(browser, job):
    """The shared demo run's own statistics (tests.job_helpers), in the browser."""
    if not os.path.exists(os.path.join(job.analyzed, "pre_transform_stats", "FeatureStats.pb")):
        pytest.skip("this analyze pass writes no statistics yet")
    page = os.path.join(job.analyzed, "report.html")  # as the analyze pass wrote it
    assert _open(browser, page) == []
    _check_features(browser, load_run(job.analyzed))
