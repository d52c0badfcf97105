"""A real browser drives the case-review notebook (docs/architecture.md §10): JupyterLab on 127.0.0.1, headless Debian chromium
through Playwright, run all cells, find the slice slider and the CT image, move the slider, see the image change.
It also takes the README's screenshots (the case review, a report page) into ``$WORKBENCH_SCREENSHOTS``."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)")
def test_case_review_in_a_real_browser(calibrated_run, tiny_cohort, tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    from workbench.data.case import load_cases
    from workbench.report.build import write_report

    work = tmp_path / "lab"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "03_case_review.ipynb", work)
    port, token = _port(), secrets.token_hex(16)
    env = {**os.environ, "WORKBENCH_COHORT": str(tiny_cohort), "WORKBENCH_RUN": str(calibrated_run),
           "WORKBENCH_STEPS": "4", "JUPYTER_CONFIG_DIR": str(tmp_path / "jcfg"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "jrt")}
    lab = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
                            "--ServerApp.open_browser=False", "--allow-root", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
                            "jupyterlab.NeverCheckForUpdate"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    # README screenshots: WORKBENCH_SCREENSHOTS=bench/results (a plain `make test` keeps the tree clean)
    shots = Path(os.environ.get("WORKBENCH_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if time.time() > deadline or lab.poll() is not None:
                    raise AssertionError("JupyterLab did not start on 127.0.0.1 within 90 s") from None
                time.sleep(1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/03_case_review.ipynb?token={token}", timeout=90_000)
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
            image.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "screenshot_case_review.png"))
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
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, 15)
        lab.wait(timeout=30)
