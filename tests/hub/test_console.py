"""The web console in a real headless browser (Debian's chromium through chromium-driver, driven by selenium)
against a running hub with a real mosquitto and real MicroPython agents.

Each page is saved as a screenshot under the test's tmp_path. Skipped, saying why, without chromium,
chromium-driver or selenium (`make test` installs them when it runs as root).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from consoletest import LiveHub, agent_config

from edgestream_tools.broker import Mosquitto

CHROMIUM = "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
if not Path(CHROMIUM).exists() or not Path(DRIVER).exists():
    pytest.skip(f"no browser: {CHROMIUM} or {DRIVER} is missing (sudo apt-get install -y chromium chromium-driver)",
                allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    broker = Mosquitto(tmp_path_factory.mktemp("broker")).start()
    h = LiveHub(tmp_path_factory.mktemp("hub"), broker.port)
    try:
        h.start()
        h.start_agent("dev1")
        h.start_agent("dev2")
        h.wait_online("dev1", "dev2")
        yield h
    finally:
        h.close()
        broker.stop()


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ARGS:
        opts.add_argument(a)
    opts.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    opts.add_argument("--window-size=1280,900")
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def until(driver, cond, timeout: float = 20.0, what: str = ""):
    """Poll ``cond(driver)`` (bounded); returns its value or fails saying what it waited for."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            v = cond(driver)
            if v:
                return v
        except Exception as e:  # an element replaced while it was read: try again
            last_error = e
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout:g}s for {what or cond}: {last_error}")


def request_urls(driver) -> list[str]:
    """Every URL the page asked for, from the performance log (CDP Network events)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def test_the_console_shows_devices_plots_config_pushes_and_sql_runs(live, browser, tmp_path):
    base = live.url
    shots = tmp_path / "screenshots"
    shots.mkdir()
    urls: list[str] = []

    # -- devices: a live table
    browser.get(base + "/")
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#devices tbody tr")) == 2, what="two devices")
    rows = {r.get_attribute("data-device"): r for r in browser.find_elements(By.CSS_SELECTOR, "#devices tbody tr")}
    assert set(rows) == {"dev1", "dev2"}
    until(browser, lambda d: all("online" in r.text for r in d.find_elements(By.CSS_SELECTOR, "#devices tbody tr")),
          what="both online")
    assert "heap free" in browser.find_element(By.CSS_SELECTOR, "#devices thead").text.lower()
    until(browser, lambda d: d.find_element(By.ID, "live").text == "live", what="the event stream")
    browser.save_screenshot(str(shots / "devices.png"))

    # keyboard: the skip link, then the sections, are reached with Tab, and focus is visible
    browser.refresh()
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#devices tbody tr")) == 2, what="devices again")
    browser.switch_to.active_element.send_keys(Keys.TAB)
    reached = []
    for _ in range(5):
        el = browser.switch_to.active_element
        reached.append(el.text)
        el.send_keys(Keys.TAB)
    assert reached[:4] == ["Skip to content", "Devices", "Pipelines", "SQL"], reached
    outline = browser.execute_script("const a = document.querySelector('[data-nav=sql]'); a.focus();"
                                     "return getComputedStyle(a).outlineStyle")
    assert outline != "none"

    # -- a device: plots that gain points while the agent publishes, opened from the keyboard
    def press_enter_on_dev1(d):  # the live table replaces its rows: find the link and press it in one step
        d.find_element(By.CSS_SELECTOR, "#devices tbody tr[data-device=dev1] a").send_keys(Keys.ENTER)
        return True

    until(browser, press_enter_on_dev1, what="the link to dev1")
    until(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Device dev1", what="the device page")

    def plot_points(d):
        return int(d.find_element(By.CSS_SELECTOR, 'figure[data-series="temp/w"]').get_attribute("data-points"))

    first = until(browser, plot_points, what="points in the plot of temp/w")
    until(browser, lambda d: plot_points(d) >= first + 3, what="new points while it publishes")
    assert browser.find_elements(By.CSS_SELECTOR, 'figure[data-series="temp/w"] canvas')
    until(browser, lambda d: int(d.find_element(By.ID, "health-plot").get_attribute("data-points")) >= 2,
          what="health points")
    browser.save_screenshot(str(shots / "device.png"))

    # -- a config push, answered by the device
    area = browser.find_element(By.ID, "config-json")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=config-json]").text
    cfg = agent_config("dev1", live.broker_port, window_ms=300)
    browser.execute_script("arguments[0].value = arguments[1]", area, json.dumps(cfg, indent=1))
    browser.find_element(By.CSS_SELECTOR, "#config-form button[type=submit]").click()
    answer = until(browser, lambda d: d.find_element(By.ID, "config-answer").text if "applied" in
                   d.find_element(By.ID, "config-answer").text else None, 40, what="the device's answer")
    assert answer == "Config version 2 applied by dev1."
    assert live.saved_agent_config("dev1")["sensors"][0]["windows"][0]["size_ms"] == 300
    # back to version 1, forced (unforced, the hub refuses an older version than the one desired)
    browser.execute_script("arguments[0].value = arguments[1]", area,
                           json.dumps({**agent_config("dev1", live.broker_port, window_ms=500), "version": 1}))
    force = browser.find_element(By.ID, "config-force")
    browser.execute_script("arguments[0].checked = true", force)  # as the textarea: the page may be redrawing
    browser.find_element(By.CSS_SELECTOR, "#config-form button[type=submit]").click()
    answer = until(browser, lambda d: d.find_element(By.ID, "config-answer").text if "version 1 " in
                   d.find_element(By.ID, "config-answer").text else None, 40, what="the forced push's answer")
    assert answer == "Config version 1 applied by dev1.", answer
    assert live.saved_agent_config("dev1")["sensors"][0]["windows"][0]["size_ms"] == 500
    browser.save_screenshot(str(shots / "device-config.png"))
    urls += request_urls(browser)

    # -- pipelines: rates, recent results, dead letters with reasons
    with __import__("socket").create_connection(("127.0.0.1", live.web_port()), 10) as c:
        c.sendall(b'POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8\r\n'
                  b'Connection: close\r\n\r\n{"v": 0}')
        c.recv(1000)
    browser.get(base + "/#/pipelines")
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "section[data-pipeline]")) == 3, what="3 pipelines")
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tbody[data-results=raw] tr"), what="raw's results")
    until(browser, lambda d: "division by zero" in d.find_element(By.ID, "dead-letters").text, what="a dead letter")
    stats = browser.find_element(By.CSS_SELECTOR, "dl[data-stats=raw]").text
    assert "In /s" in stats and "Errors" in stats and "Dead letters" in stats
    browser.save_screenshot(str(shots / "pipelines.png"))
    urls += request_urls(browser)

    # -- SQL: a test run on the records a source saw, EXPLAIN, and a located error
    browser.get(base + "/#/sql")
    query = until(browser, lambda d: d.find_element(By.ID, "sql-query"), what="the editor")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=sql-query]").text == "Query"
    browser.execute_script("arguments[0].value = arguments[1]", query,
                           "SELECT device, count(*) AS n, max(max) AS hottest FROM s GROUP BY device")
    browser.find_element(By.ID, "sql-source").send_keys("devs")
    browser.find_element(By.ID, "sql-run").click()
    table = until(browser, lambda d: d.find_element(By.ID, "sql-rows"), what="rows")
    heads = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    assert heads == ["device", "n", "hottest"]
    devices = {tr.find_element(By.TAG_NAME, "td").text for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")}
    assert devices <= {"dev1", "dev2"} and devices
    browser.save_screenshot(str(shots / "sql-run.png"))
    browser.find_element(By.ID, "sql-explain").click()
    plan = until(browser, lambda d: d.find_element(By.ID, "sql-plan").text, what="the plan")
    assert "scan stream s" in plan
    browser.execute_script("arguments[0].value = arguments[1]", query, "SELECT device\nFROM s WHERE nope(x)")
    query.send_keys(Keys.CONTROL, Keys.ENTER)  # Ctrl+Enter runs it
    err = until(browser, lambda d: d.find_element(By.ID, "sql-error"), what="the error")
    assert "Error at line 2, column 14" in err.text and "unknown function 'nope'" in err.text
    browser.save_screenshot(str(shots / "sql-error.png"))

    # -- a phone-sized screen: nothing wider than the screen but the tables' own scrolling
    browser.set_window_size(390, 844)
    browser.get(base + "/")
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#devices tbody tr")) == 2, what="devices")
    width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], width
    browser.save_screenshot(str(shots / "devices-phone.png"))
    urls += request_urls(browser)

    # nothing left the machine: every network request went to the hub (chrome://, data: are the browser's own)
    here = urlsplit(base).netloc
    network = [u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss", "ftp")]
    assert network and all(urlsplit(u).netloc == here for u in network), \
        sorted({u for u in network if urlsplit(u).netloc != here})
    assert {urlsplit(u).scheme for u in urls} <= {"http", "data", "chrome", "blob"}, {urlsplit(u).scheme for u in urls}
    assert {urlsplit(u).path for u in network} >= {"/", "/console/app.js", "/console/uPlot.iife.min.js", "/api/devices",
                                                 "/api/events"}
    # no script error (the 422 of the bad query is logged by the network layer, as it should be)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and e["source"] != "network"]
    assert not errors, errors
    assert sorted(p.name for p in shots.iterdir()) == ["device-config.png", "device.png", "devices-phone.png",
                                                      "devices.png", "pipelines.png", "sql-error.png", "sql-run.png"]


def test_the_console_asks_for_the_token(tmp_path, mosquitto, browser):
    h = LiveHub(tmp_path, mosquitto.port, api=', token: "s3cret"', token="s3cret").start()
    try:
        browser.get(h.url + "/")
        field = until(browser, lambda d: d.find_element(By.ID, "token"), what="the token form")
        assert browser.find_element(By.CSS_SELECTOR, "label[for=token]").text == "Token"
        field.send_keys("s3cret", Keys.ENTER)
        until(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Devices", what="the devices page")
        until(browser, lambda d: d.find_element(By.ID, "live").text == "live", what="the event stream")
        browser.save_screenshot(str(tmp_path / "token.png"))
    finally:
        h.close()
