"""The status page (GET /, server/static/) in headless Chromium, driven by selenium:
it shows the server version, devices and models with their labels, segments an uploaded
volume through the job API (result = the tiny model's known labels, computed here without
the server), lists the job, draws the slice preview, and logs no errors in the browser
console. A screenshot is written to the test's tmp_path (and to $ITKIT_SCREENSHOT_DIR if set).

Needs Debian's chromium and chromium-driver (scripts/install-deps.sh installs both) and
selenium (in .venv); the network here is closed, so Chromium runs without any of its
background services.
"""
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import expected_labels, make_volume, read_result, write_image

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (scripts/install-deps.sh)")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1280,1000")


@pytest.fixture
def browser(tmp_path):
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("needs chromium and chromedriver (Debian packages chromium, chromium-driver; "
                    "scripts/install-deps.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for a in CHROMIUM_ARGS:
        options.add_argument(a)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def screenshot(driver, tmp_path, name):
    """Whole page as PNG; returns the path."""
    for _ in range(2):  # the layout may change with the window size: measure again
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(max(height + 140, 600), 4000))
    path = tmp_path / name
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 10000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out_dir = os.environ.get("ITKIT_SCREENSHOT_DIR")
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        shutil.copy(path, os.path.join(out_dir, name))
    return path


def texts(driver, css):
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def test_status_page_shows_server_and_segments(server, browser, tmp_path):
    info = server.get("/api/info").json()
    health = server.get("/api/health").json()
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#models tr[data-model]")) == len(info["models"]))
    assert browser.title == "ITKIT Inference Server"

    # Version, devices, models with their labels, as the API gives them.
    wait.until(lambda d: d.find_element(By.ID, "version").text == f"version {health['version']}")
    assert browser.find_element(By.ID, "health").text == "running"
    assert health["version"] in browser.find_element(By.ID, "server-info").text
    devices = texts(browser, "#devices tbody tr")
    assert devices[0].startswith("cpu") and len(devices) == 1 + len(info["devices"])
    for d, row in zip(info["devices"], devices[1:]):
        assert d["name"] in row and "free" in row
    for name, model in info["models"].items():
        row = browser.find_element(By.CSS_SELECTOR, f'#models tr[data-model="{name}"]').text
        for label in model["labels"]:
            assert f"{label['value']} {label['name']}" in row
    assert sorted(o.text for o in Select(browser.find_element(By.ID, "model")).options) == sorted(info["models"])

    # Segment a volume: the tiny model's answer is known voxel by voxel (expected_labels).
    arr = make_volume((12, 14, 16), seed=21)
    image = tmp_path / "upload.nii.gz"
    reference = write_image(image, arr)
    Select(browser.find_element(By.ID, "model")).select_by_visible_text("tiny")
    browser.find_element(By.ID, "image").send_keys(str(image))
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, 120).until(
        lambda d: d.find_elements(By.ID, "download") or "Failed" in d.find_element(By.ID, "run-status").text)
    status = browser.find_element(By.ID, "run-status").text
    assert status.startswith("Done"), status

    # The download link holds the label file, on the input's grid.
    content = bytes(browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(document.getElementById('download').href).then((r) => r.arrayBuffer())"
        ".then((b) => done(Array.from(new Uint8Array(b))), (e) => done(String(e)));"))
    seg = read_result(content, tmp_path)
    assert seg.GetSize() == reference.GetSize() and seg.GetOrigin() == pytest.approx(reference.GetOrigin())
    assert seg.GetSpacing() == pytest.approx(reference.GetSpacing())
    expected = expected_labels(arr)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(seg), expected)

    # The preview: slice canvas drawn, legend counts = the expected labels' counts.
    wait.until(lambda d: d.find_element(By.ID, "preview").is_displayed())
    counts = {int(r.get_attribute("data-label")): int(r.find_element(By.CSS_SELECTOR, ".count").text)
              for r in browser.find_elements(By.CSS_SELECTOR, "#legend tr[data-label]")}
    values, n = np.unique(expected, return_counts=True)
    assert counts == {int(v): int(c) for v, c in zip(values, n)}
    canvas = browser.find_element(By.ID, "slice")
    assert (int(canvas.get_attribute("width")), int(canvas.get_attribute("height"))) == (16, 14)
    assert canvas.size["width"] > 100
    assert browser.find_element(By.ID, "slice-label").text == f"{12 // 2 + 1} / 12"

    # The job table lists the finished job.
    wait.until(lambda d: any("tiny" in t and "done" in t for t in texts(d, "#jobs tr[data-job]")))

    screenshot(browser, tmp_path, "status_page.png")
    assert console_errors(browser) == []


def test_status_page_asks_for_the_api_key(make_server, model_dir, browser, tmp_path):
    srv = make_server("--model-dir", model_dir, "--api-key", "page-test-key")
    browser.get(srv.url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.ID, "auth").is_displayed())
    assert texts(browser, "#models tr[data-model]") == []
    browser.find_element(By.ID, "api-key").send_keys("page-test-key")
    browser.find_element(By.CSS_SELECTOR, "#auth-form button").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#models tr[data-model]")) == 2)
    assert not browser.find_element(By.ID, "auth").is_displayed()
    assert "required" in browser.find_element(By.ID, "server-info").text
    screenshot(browser, tmp_path, "status_page_api_key.png")
    # The 401 answers before the key was given are the only console errors.
    assert all("401" in e["message"] for e in console_errors(browser)), console_errors(browser)
