"""The "Score your data" page in a real browser: ``streamlit run`` driven by headless Chromium.

Over a one-run registry (tests/score_fixtures.py), open /score, upload a generated zip of labelled
slices and see the metric tiles, the per-image table and the disclaimer; then upload two bad archives
(path traversal, not a zip) and see one error line each, never a traceback. The server is
tests/conftest.py's ``server`` fixture, as for tests/test_browser.py (Debian's chromium through Playwright;
skipped without it unless ``$CI``).
Screenshots are left in ``/tmp/bt_browser_score_ok.png`` (results) and ``/tmp/bt_browser_score.png`` (the end).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bt_core.serving.inference import DISCLAIMER
from conftest import CHROMIUM_ARGS
from score_fixtures import build_score_registry, labelled_zip, make_zip

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

REGISTRY = build_score_registry  # the run registry conftest's `server` fixture serves
SCREENSHOT = Path("/tmp/bt_browser_score.png")
WAIT_MS = 60_000


def test_score_page_uploads_a_zip_sees_metrics_and_refuses_bad_archives(server, chromium_path):
    from playwright.sync_api import expect, sync_playwright

    good = labelled_zip(4)
    bad = {"traversal.zip": (make_zip({"../../etc/yes/a.png": b"x"}), "unsafe path"),
           "fake.zip": (b"this is not a zip archive", "not a zip archive")}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(WAIT_MS)
            page.goto(f"{server}/score", wait_until="domcontentloaded")
            try:
                expect(page.get_by_text("Score your data").first).to_be_visible(timeout=WAIT_MS)
                upload = page.locator("input[type=file]")
                expect(upload).to_have_count(1, timeout=WAIT_MS)
                upload.set_input_files(files=[{"name": "mine.zip", "mimeType": "application/zip", "buffer": good}])
                metrics = page.get_by_test_id("stMetric")
                for label in ("Accuracy", "Sensitivity", "Specificity", "AUC"):
                    expect(metrics.filter(has_text=label)).to_have_count(1, timeout=WAIT_MS)
                value = metrics.filter(has_text="Accuracy").get_by_test_id("stMetricValue").inner_text().strip()
                assert value.endswith("%") and 0.0 <= float(value.rstrip("%")) <= 100.0, value
                expect(page.get_by_text("Scored 8 images", exact=False)).to_be_visible(timeout=WAIT_MS)
                expect(page.get_by_text(DISCLAIMER, exact=True).first).to_be_visible(timeout=WAIT_MS)
                expect(page.get_by_test_id("stDataFrame")).to_have_count(1, timeout=WAIT_MS)
                page.screenshot(path=str(SCREENSHOT.with_name("bt_browser_score_ok.png")), full_page=True)
                for name, (blob, words) in bad.items():
                    page.locator("input[type=file]").set_input_files(
                        files=[{"name": name, "mimeType": "application/zip", "buffer": blob}])
                    error = page.get_by_test_id("stAlertContentError")
                    expect(error.filter(has_text=words)).to_have_count(1, timeout=WAIT_MS)
                    assert error.count() == 1 and page.get_by_test_id("stMetric").count() == 0, name
                assert page.get_by_test_id("stException").count() == 0
            finally:
                try:
                    page.screenshot(path=str(SCREENSHOT), full_page=True)
                except Exception:  # noqa: BLE001 - a failed screenshot must not hide the test's own failure
                    pass
        finally:
            browser.close()
