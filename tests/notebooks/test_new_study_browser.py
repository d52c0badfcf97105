"""A real browser clicks the nodule in notebook 05 (a new study from the PACS): JupyterLab on 127.0.0.1, headless
Debian chromium through Playwright, a real Orthanc on 127.0.0.1 holding one tiny-cohort study and its mark. Run all
cells, switch on "mark nodule", click the CT image at the pixel of the generator's nodule centre (placed with the
viewer's own geometry), press Score: the panel shows the clicked point within one voxel spacing of that centre and a
risk that is ``workbench predict``'s for the same files, note and point. Saves the README's screenshot of 05 into
``$WORKBENCH_SCREENSHOTS`` when set."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.jupyterlab import jupyterlab
from tests.helpers.studies import ct_files, mark_for
from workbench.service import pacs_sandbox

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SITE = "hospital_a"


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)")
@pytest.mark.skipif(pacs_sandbox.available() is not None, reason=str(pacs_sandbox.available()))
def test_the_nodule_clicked_in_the_new_study_notebook_is_scored_as_workbench_predict_scores_it(
        calibrated_run, tiny_cohort, tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    from workbench.data.case import find_site_case
    from workbench.data.dicom_io import load_ct_series
    from workbench.report.study import StudyRequest, predict_study
    from workbench.service.pacs_sandbox import OrthancSandbox
    from workbench.ui.ct_viewer import ViewerConfig, ViewState, plane_geometry, series_layers

    case = find_site_case(tiny_cohort / SITE, f"{SITE}_0000")
    from workbench.data.deid import deidentify

    note = tmp_path / "note.txt"  # de-identified already, so the README's screenshot names no (synthetic) patient
    note.write_text(deidentify(case.note))
    # where the generator put the nodule, on the screen the viewer draws (axial, zoom 1)
    layers = series_layers(load_ct_series(case.series_dir), case.nodule_lps_mm)
    marker, spacing = np.asarray(layers["marker"]), np.asarray(layers["spacing_mm"])
    k = int(np.floor(marker[2] + 0.5))
    geo = plane_geometry(layers["hu"].shape, layers["spacing_mm"], ViewState(plane="axial", index=k),
                         ViewerConfig().size, marker)
    px, py = geo.to_pixel(marker)
    work = tmp_path / "lab"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "05_new_study.ipynb", work)
    shots = Path(os.environ.get("WORKBENCH_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    node = tmp_path / "node"
    with OrthancSandbox(tmp_path / "pacs") as pacs:
        for f in [*ct_files(case), mark_for(case, tmp_path / "mark.dcm")]:
            study = pacs.upload(f)["ParentStudy"]
        env = {"WORKBENCH_PACS_URL": pacs.url, "WORKBENCH_PACS_AET": pacs.aet, "WORKBENCH_PACS_HOST": "127.0.0.1",
               "WORKBENCH_PACS_DICOM_PORT": str(pacs.dicom_port), "WORKBENCH_RUN": str(calibrated_run),
               "WORKBENCH_COHORT": str(tiny_cohort), "WORKBENCH_SITE": SITE, "WORKBENCH_NOTE": str(note),
               "WORKBENCH_NODE_DIR": str(node), "WORKBENCH_STEPS": "4"}
        with jupyterlab(work, env, tmp_path) as (base, token), sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            try:
                page.goto(f"{base}/lab/tree/05_new_study.ipynb?token={token}", timeout=90_000)
                page.wait_for_selector(".jp-Notebook", timeout=90_000)
                page.wait_for_selector("text=| Idle", timeout=120_000)
                page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
                # the last cell has run: the study was opened, scored at the radiologist's mark and its SR sent
                page.locator(".jp-OutputArea-output", has_text="workbench SRs now in the study").first.wait_for(
                    timeout=300_000)
                image = page.locator("img.ct-image").first
                position = page.locator(".ct-position").first
                shown = int(re.search(r"axial (\d+)/", position.inner_text()).group(1)) - 1
                if shown != k:  # to the nodule's slice with the slider, as a reader would
                    page.locator(".ct-slice-slider .noUi-handle").first.click()
                    for _ in range(abs(k - shown)):
                        page.keyboard.press("ArrowRight" if k > shown else "ArrowLeft")
                    page.locator(".ct-position", has_text=f"axial {k + 1}/").first.wait_for(timeout=60_000)
                page.locator(".ct-mark-button").first.click()
                box = page.evaluate("() => { const i = document.querySelector('img.ct-image'); return {w: i.clientWidth,"
                                    " h: i.clientHeight, nw: i.naturalWidth, nh: i.naturalHeight}; }")
                image.click(position={"x": (px + 0.5) * box["w"] / box["nw"], "y": (py + 0.5) * box["h"] / box["nh"]})
                point = page.locator(".new-study-point-value", has_text="(clicked)").first
                point.wait_for(timeout=30_000)
                clicked = _floats(point.get_attribute("data-lps"))
                page.locator(".new-study-score").first.click()
                result = page.locator(f".new-study-result[data-lps='{point.get_attribute('data-lps')}']").first
                result.wait_for(timeout=120_000)
                page.locator(".new-study-status", has_text="scored").first.wait_for(timeout=60_000)  # panel done
                probability = float(result.get_attribute("data-probability"))
                risk_text = result.locator(".risk").first.inner_text()
                page.evaluate("() => document.querySelector('.new-study-list').scrollIntoView({block: 'start'})")
                page.screenshot(path=str(shots / "screenshot_new_study.png"))
            except Exception:
                page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)
                raise
            finally:
                browser.close()
        # the clicked point is the generator's centre within one voxel spacing along each axis
        offset = np.abs(np.asarray(clicked) - np.asarray(case.nodule_lps_mm))
        assert np.all(offset <= spacing), (clicked, case.nodule_lps_mm, spacing.tolist())
        # the shown risk is workbench predict's for the same files (as the PACS gives them), note and point
        dicom = tmp_path / "from_pacs"
        pacs.download_study(study, dicom)
    expected = predict_study(StudyRequest(calibrated_run, dicom, nodule=clicked, note=note, site=SITE, node_dir=node))
    assert abs(probability - expected["probability"]) <= 1e-6, (probability, expected["probability"])
    assert f"risk {probability:.0%}" in risk_text, risk_text
    print(f"new study: clicked {np.round(clicked, 2).tolist()} vs centre {list(case.nodule_lps_mm)} "
          f"(offset {np.round(offset, 2).tolist()} mm), risk {probability:.4f}")
