"""End to end in a real browser: the dashboard served by ``streamlit run``, driven by headless Chromium.

tests/conftest.py's ``server`` fixture starts the app on a free loopback port over the tiny run
registry of tests/app_fixtures.py (``$BT_RUNS_DIR``; no shipped model is needed). The first test opens
it in Debian's chromium through Playwright, uploads a generated PNG through the page's file input and
checks that both models' tumour probabilities, their heatmaps (images actually decoded by the browser)
and the decision-support notice are shown; the second uploads a DICOM series on the scan page. A
screenshot is left in ``/tmp/bt_browser.png`` for debugging.

Needs ``/usr/bin/chromium`` (Playwright never downloads a browser): without it the test is skipped,
or fails when ``$CI`` is set. Marker ``browser``: ``pytest -m browser`` runs it alone (about a minute
on 2 CPU cores, most of it training the tiny registry and the server's first import of TensorFlow).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app_fixtures import build_registry
from bt_core.serving.inference import DISCLAIMER
from conftest import CHROMIUM_ARGS, blob_image

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

REGISTRY = build_registry  # the run registry conftest's `server` fixture serves
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = Path("/tmp/bt_browser.png")
ANSWER_TIMEOUT = 60  # s, from the upload to both probabilities (first load of both models included)
MODELS = ("CNN", "Transfer")
NAV_PAGES = (ROOT / "streamlit_app.py").read_text().count("st.Page(")  # every page in st.navigation


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_in_a_real_browser_shows_both_probabilities_heatmaps_and_the_disclaimer(server, chromium_path):
    from playwright.sync_api import expect, sync_playwright

    scan = png_bytes(blob_image(np.random.default_rng(5), 96, tumour=True))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            wait = ANSWER_TIMEOUT * 1000  # ms; expect() waits 5 s unless told
            page.set_default_timeout(wait)
            # a link straight to a page, as the server's first request, is still routed by st.navigation
            page.goto(f"{server}/explore", wait_until="domcontentloaded")
            expect(page.get_by_text("Cross-validation explorer")).to_be_visible(timeout=wait)
            expect(page.get_by_test_id("stSidebarNavLink")).to_have_count(NAV_PAGES, timeout=wait)
            page.goto(server, wait_until="domcontentloaded")
            try:
                upload = page.locator("input[type=file]")
                expect(upload).to_have_count(1, timeout=wait)  # after the models load
                expect(page.get_by_test_id("stSidebarNavLink")).to_have_count(NAV_PAGES, timeout=wait)  # every page reachable
                upload.set_input_files(files=[{"name": "scan one.png", "mimeType": "image/png", "buffer": scan}])

                metrics = page.get_by_test_id("stMetric")
                for model in MODELS:  # both answers appear (the spinner is gone by then)
                    expect(metrics.filter(has_text=f"{model} tumour probability")).to_have_count(1, timeout=wait)
                for model in MODELS:
                    value = metrics.filter(has_text=f"{model} tumour probability").get_by_test_id("stMetricValue")
                    text = value.inner_text().strip()
                    assert text.endswith("%") and 0.0 <= float(text.rstrip("%")) <= 100.0, (model, text)

                for model in MODELS:  # each heatmap: an <img> from st.image, captioned, decoded by the browser
                    figure = page.get_by_test_id("stImage").filter(has_text=f"{model} Grad-CAM")
                    expect(figure).to_have_count(1, timeout=wait)
                    img = figure.locator("img")
                    expect(img).to_be_visible(timeout=wait)
                    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
                assert page.get_by_test_id("stImage").locator("img").count() == 3  # original | CNN | transfer

                notice = page.get_by_text(DISCLAIMER, exact=True)
                expect(notice.first).to_be_visible(timeout=wait)
                assert page.get_by_test_id("stException").count() == 0
                assert page.get_by_test_id("stAlertContentError").count() == 0
            finally:  # Streamlit scrolls inside its own container: a tall viewport shows the results
                try:
                    page.set_viewport_size({"width": 1400, "height": 2000})
                    page.screenshot(path=str(SCREENSHOT), full_page=True)
                except Exception:  # noqa: BLE001 - a failed screenshot must not hide the test's own failure
                    pass
        finally:
            browser.close()


def test_a_dicom_series_in_a_real_browser_shows_the_slice_slider_and_the_per_slice_plot(server, chromium_path):
    """Check a scan: four DICOM files of one series, uploaded together, give a slider over the slices and a
    plotly line per model; Grad-CAM of the chosen slice is drawn."""
    from playwright.sync_api import expect, sync_playwright

    from test_app_scan import dicom_series

    files = [{"name": name, "mimeType": "application/dicom", "buffer": blob} for name, blob in dicom_series(4)]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            wait = ANSWER_TIMEOUT * 1000
            page.set_default_timeout(wait)
            page.goto(f"{server}/scan", wait_until="domcontentloaded")
            expect(page.get_by_text("Check a scan", exact=True).first).to_be_visible(timeout=wait)
            upload = page.locator("input[type=file]")
            expect(upload).to_have_count(1, timeout=wait)
            upload.set_input_files(files=files)
            slider = page.get_by_test_id("stSlider").filter(has_text="Slice")
            expect(slider).to_have_count(1, timeout=wait)
            expect(slider.get_by_role("slider")).to_have_attribute("max", "4", timeout=wait)
            chart = page.get_by_test_id("stPlotlyChart")
            expect(chart).to_have_count(1, timeout=wait)
            expect(chart.locator(".scatterlayer .trace")).to_have_count(2, timeout=wait)  # one line per model
            expect(page.get_by_test_id("stImage").filter(has_text="Transfer Grad-CAM")).to_have_count(1, timeout=wait)
            expect(page.get_by_text(DISCLAIMER, exact=True).first).to_be_visible(timeout=wait)
            assert page.get_by_test_id("stException").count() == 0
            assert page.get_by_test_id("stAlertContentError").count() == 0
        finally:
            try:
                page.screenshot(path="/tmp/bt_browser_scan.png", full_page=True)
            except Exception:  # noqa: BLE001 - a failed screenshot must not hide the test's own failure
                pass
            browser.close()
