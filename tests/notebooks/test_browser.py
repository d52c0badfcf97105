"""A real browser drives the case-review notebook (docs/architecture.md §10): JupyterLab on 127.0.0.1, headless Debian chromium
through Playwright, run all cells, find the slice slider and the CT image, move the slider, see the image change; the
nodule card shows the measured size; the coronal view is displayed at the physical height/width ratio of the series
(within 5 %); two clicks of the caliper read the distance between them within one pixel spacing. It also takes the
README's screenshots (the case review, a report page) into ``$WORKBENCH_SCREENSHOTS``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.jupyterlab import jupyterlab

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _shown_case(tiny_cohort: Path, title: str):  # noqa: ANN202
    """The case whose id heads the screen ("hospital_a_0005 (hospital_a)")."""
    from workbench.data.case import load_cases
    from workbench.runtime.run import site_dirs_of

    case_id = title.split()[0]
    return next(c for site in site_dirs_of(tiny_cohort) for c in load_cases(site) if c.case_id == case_id)


def _check_card(page, case) -> None:  # noqa: ANN001
    """The nodule card is on the screen with the size the measurement gives (the same function as the reports)."""
    from workbench.runtime.nodule_card import measured_nodule

    card = measured_nodule(case, [])
    assert card, "the first test case of the tiny cohort should be measurable"
    shown = page.locator(".nodule-card").first
    shown.wait_for(timeout=60_000)
    text = shown.inner_text()
    assert f"{card['long_axis_mm']:.1f} x {card['short_axis_mm']:.1f} mm" in text and "mm3" in text, text
    if card.get("lung_rads"):  # the category, where the card's source assigns one
        assert f"Lung-RADS v2022\t{card['lung_rads']}" in text or f"Lung-RADS v2022 {card['lung_rads']}" in text, text


def _box(page) -> dict:  # noqa: ANN001
    """The CT image's displayed content box (CSS pixels, border excluded) and its PNG's own size."""
    return page.evaluate("() => { const i = document.querySelector('img.ct-image'); return {w: i.clientWidth, "
                         "h: i.clientHeight, nw: i.naturalWidth, nh: i.naturalHeight, src: i.getAttribute('src')}; }")


def _check_coronal_and_caliper(page, case) -> dict:  # noqa: ANN001
    """Coronal: displayed height/width against the series' K and I extents in mm; then the caliper between two
    clicks against the distance their CSS pixels span, each axis scaled by its own extent / displayed size."""
    from workbench.data.dicom_io import load_ct_series

    vol = load_ct_series(case.series_dir)
    spacing = np.linalg.norm(np.asarray(vol.affine)[:3, :3], axis=0)
    extent = np.array(vol.shape[1:]) * spacing  # mm along I (R-L), J, K (S-I)
    before = _box(page)["src"]
    page.locator(".ct-plane button", has_text="coronal").first.click()
    page.wait_for_function("(b) => document.querySelector('img.ct-image').getAttribute('src') !== b", arg=before,
                           timeout=60_000)
    page.wait_for_function("() => { const i = document.querySelector('img.ct-image'); return i.complete && "
                           "i.naturalWidth > 0; }", timeout=30_000)
    box = _box(page)
    physical = extent[2] / extent[0]
    aspect_error = (box["h"] / box["w"]) / physical - 1
    assert abs(aspect_error) < 0.05, (box, extent.tolist())
    page.locator(".ct-caliper-button").first.click()
    image = page.locator("img.ct-image").first
    a, b = (0.25 * box["w"], 0.3 * box["h"]), (0.75 * box["w"], 0.7 * box["h"])
    image.click(position={"x": a[0], "y": a[1]})
    page.locator(".ct-caliper", has_text="second point").first.wait_for(timeout=30_000)
    image.click(position={"x": b[0], "y": b[1]})
    shown = page.locator(".ct-caliper", has_text=" mm").first
    shown.wait_for(timeout=30_000)
    measured = float(shown.inner_text().split(":")[1].split("mm")[0])
    truth = float(np.hypot((b[0] - a[0]) * extent[0] / box["w"], (b[1] - a[1]) * extent[2] / box["h"]))
    caliper_error = measured - truth
    assert abs(caliper_error) <= min(spacing[0], spacing[2]), (measured, truth, spacing.tolist())
    return {"aspect_error": aspect_error, "caliper_error_mm": caliper_error, "caliper_mm": measured}


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)")
def test_case_review_in_a_real_browser(calibrated_run, tiny_cohort, tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    from workbench.data.case import load_cases
    from workbench.report.build import write_report

    work = tmp_path / "lab"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "03_case_review.ipynb", work)
    # README screenshots: WORKBENCH_SCREENSHOTS=bench/results (a plain `make test` keeps the tree clean)
    shots = Path(os.environ.get("WORKBENCH_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    env = {"WORKBENCH_COHORT": str(tiny_cohort), "WORKBENCH_RUN": str(calibrated_run), "WORKBENCH_STEPS": "4"}
    with jupyterlab(work, env, tmp_path) as (base, token), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"{base}/lab/tree/03_case_review.ipynb?token={token}", timeout=90_000)
        page.wait_for_selector(".jp-Notebook", timeout=90_000)
        page.wait_for_selector("text=| Idle", timeout=120_000)  # the status bar: the kernel has started
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        image = page.locator("img.ct-image").first
        try:
            image.wait_for(timeout=300_000)
        except Exception:
            page.screenshot(path=str(tmp_path / "failed.png"))  # what the browser showed, for the log
            raise
        slider = page.locator(".ct-slice-slider").first
        slider.wait_for(timeout=60_000)
        before = image.get_attribute("src")
        handle = slider.locator(".noUi-handle").first
        handle.click()
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        page.wait_for_function("(b) => document.querySelector('img.ct-image').getAttribute('src') !== b", arg=before,
                               timeout=60_000)
        assert image.get_attribute("src") != before
        case = _shown_case(tiny_cohort, page.locator("h3", has_text="(hospital_").first.inner_text())
        try:
            _check_card(page, case)
        except Exception:
            page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)
            raise
        moved = image.get_attribute("src")
        for _ in range(3):  # back to the nodule's slice for the screenshot
            page.keyboard.press("ArrowLeft")
        page.wait_for_function("(b) => document.querySelector('img.ct-image').getAttribute('src') !== b", arg=moved,
                               timeout=60_000)
        image.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "screenshot_case_review.png"))
        try:
            figures = _check_coronal_and_caliper(page, case)
        except Exception:
            page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)
            raise
        print(f"browser geometry: coronal aspect error {figures['aspect_error']:+.2%}, caliper "
              f"{figures['caliper_mm']:.1f} mm, error {figures['caliper_error_mm']:+.2f} mm")
        site = sorted(p for p in tiny_cohort.iterdir() if (p / "manifest.csv").exists())[0]
        site_copy = tmp_path / site.name
        shutil.copytree(site, site_copy)
        case = next(c for c in load_cases(site_copy) if c.split == "test" and c.has_ct)
        res = write_report(calibrated_run, case.case_id, site_copy, tmp_path / "report", formats=("html",), steps=4)
        assert "report.html" in res["files"]
        page.goto((tmp_path / "report" / "report.html").as_uri())
        page.wait_for_selector("img")
        page.screenshot(path=str(shots / "screenshot_report.png"), full_page=False)
        browser.close()
