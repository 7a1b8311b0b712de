"""A real headless Chromium for the viewer tests: Debian's ``chromium`` + ``chromium-driver`` driven by
selenium (the W3C WebDriver protocol, so no Chrome DevTools client of our own to maintain).

``scripts/install_browser.sh`` installs the browser (``make test`` runs it; :func:`headless_chromium`
runs it once more when the browser is missing).  Tests skip with the reason when neither the browser
nor selenium can be had.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Tuple

REPO = Path(__file__).resolve().parents[3]
INSTALL_SCRIPT = REPO / "scripts" / "install_browser.sh"
WINDOW = (1280, 1700)


def artefact_dir() -> Path:
    """Where screenshots go: ``$XATTN_TEST_ARTIFACTS`` or ``<tmp>/xattn-test-artifacts``."""
    path = Path(os.environ.get("XATTN_TEST_ARTIFACTS") or Path(tempfile.gettempdir()) / "xattn-test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_browser(install: bool = True) -> Tuple[Optional[str], Optional[str], str]:
    """``(chromium, chromedriver, reason)``; runs scripts/install_browser.sh once if either is missing."""
    def which():
        return (shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver"))

    chromium, driver = which()
    message = ""
    if (not chromium or not driver) and install and INSTALL_SCRIPT.is_file():
        done = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900)
        message = (done.stdout + done.stderr).strip()
        chromium, driver = which()
    if not chromium or not driver:
        return None, None, f"no headless Chromium: {message or 'chromium/chromedriver not on PATH'}"
    return chromium, driver, ""


@contextmanager
def headless_chromium() -> Iterator["object"]:
    """A selenium Chrome driver on Debian's chromium; raises RuntimeError(reason) when unavailable."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise RuntimeError("selenium is not installed (pip install selenium==4.51.0; it is in the test extra)")
    chromium, driver_path, reason = find_browser()
    if reason:
        raise RuntimeError(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="xattn-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--force-device-scale-factor=1",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, for the tests
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, script: str, timeout: float = 20.0, poll: float = 0.05):
    """Poll a JavaScript expression until it is truthy; returns its value (TimeoutError otherwise)."""
    end = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        if time.monotonic() > end:
            errors = driver.execute_script("return document.getElementById('readout').textContent;")
            raise TimeoutError(f"waited {timeout} s for {script!r} (readout: {errors!r})")
        time.sleep(poll)


def open_and_time(driver, html_path: Path) -> float:
    """Open ``html_path`` as a file:// URL and return the page's own time to first draw (ms since
    navigation start, ``data-first-draw-ms``)."""
    driver.get(Path(html_path).resolve().as_uri())
    return float(wait_for(driver, "document.body.dataset.firstDrawMs"))
