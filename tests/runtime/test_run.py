"""A RUN folder, used: site discovery, loading, evaluation (per-site calibration, ablations), prediction."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import workbench
from tests.helpers.cases import random_cases, tiny_config
from workbench.data import load_cases
from workbench.errors import CaseError, WorkbenchError
from workbench.metrics import auroc
from workbench.models import build_model
from workbench.runtime.calibration import Calibration
from workbench.runtime.inference import predict_logits
from workbench.runtime.run import cases_of, evaluate_encoded, load_run, site_calibrations, site_dirs_of


def _sites(cohort: Path) -> list[Path]:
    return sorted(p for p in cohort.iterdir() if (p / "manifest.csv").exists())


def test_site_dirs_of_a_cohort_a_site_and_neither(tiny_cohort: Path, tmp_path: Path) -> None:
    sites = _sites(tiny_cohort)
    assert len(sites) == 3
    assert site_dirs_of(tiny_cohort) == sites
    assert site_dirs_of(sites[1]) == [sites[1]]
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(WorkbenchError, match="neither a site folder"):
            site_dirs_of(bad)


def test_cases_of_keeps_the_asked_splits_of_every_site(tiny_cohort: Path) -> None:
    every = [c for s in _sites(tiny_cohort) for c in load_cases(s)]
    assert len(every) == 24  # the tiny preset: 3 sites x 8 patients
    train = cases_of([tiny_cohort], ["train"])
    assert {c.split for c in train} == {"train"}
    assert [c.case_id for c in train] == [c.case_id for c in every if c.split == "train"]
    others = sorted({c.split for c in every} - {"train"})
    assert others and len(train) + len(cases_of([tiny_cohort], others)) == len(every)
    one_site = cases_of([_sites(tiny_cohort)[0]], ["train", *others])
    assert [c.case_id for c in one_site] == [c.case_id for c in load_cases(_sites(tiny_cohort)[0])]


def test_load_run_without_calibration_json_is_the_identity_calibration(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    model, cal = load_run(tiny_run)
    saved = json.loads((tiny_run / "calibration.json").read_text())
    assert cal.temperature == pytest.approx(saved["temperature"]) and cal.logit_shift == pytest.approx(
        saved["logit_shift"])
    bare = tmp_path / "bare"
    shutil.copytree(tiny_run / "model", bare / "model")
    again, identity = load_run(bare)
    assert identity == Calibration()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
    assert site_calibrations(bare) == {}


def test_evaluate_encoded_applies_each_sites_own_calibration_and_ablates() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config()).eval()
    data = random_cases(6)
    data = type(data)(data.case_ids, ["a", "a", "a", "b", "b", "b"], data.tensors)
    logits = predict_logits(model, data)["logits"]
    shared = Calibration(temperature=2.0, logit_shift=0.5)
    res = evaluate_encoded(model, data, shared)
    p = 1 / (1 + np.exp(-(logits - 0.5) / 2.0))
    assert res["overall"]["n"] == 6 and res["overall"]["brier"] == pytest.approx(
        float(np.mean((p - data.labels) ** 2)), abs=1e-4)
    assert res["overall"]["auroc"] == pytest.approx(auroc(data.labels, logits), abs=1e-4)  # calibration keeps ranks
    assert set(res["per_site"]) == {"a", "b"} and res["per_site"]["a"]["n"] == 3
    assert res["calibration"] == shared.to_dict()
    assert sum(res["gate_mean"].values()) == pytest.approx(1.0, abs=1e-3)
    # a DP run: site b's own calibration applies to site b's cases only
    own = {"a": shared, "b": Calibration(temperature=1.0, bias=3.0)}
    res_b = evaluate_encoded(model, data, shared, per_site=own)
    pb = p.copy()
    pb[3:] = 1 / (1 + np.exp(-(logits[3:] + 3.0)))
    assert res_b["overall"]["brier"] == pytest.approx(float(np.mean((pb - data.labels) ** 2)), abs=1e-4)
    assert res_b["per_site"]["a"] == res["per_site"]["a"]
    assert set(res_b["calibration"]) == {"a", "b"}
    abl = evaluate_encoded(model, data, shared, ablations=True)["ablations"]
    # case 3 has no note and case 2 no CT: removing a modality drops the case that had only the other one
    assert abl["without_notes"]["n"] == 5 and abl["without_notes"]["gate_notes_max"] == 0.0
    assert abl["without_ct"]["n"] == 5 and abl["without_ct"]["gate_ct_max"] == 0.0
    assert abl["without_ct"]["gate_notes_mean"] == pytest.approx(1.0)


def test_evaluate_cli_prints_metrics_with_ablations(tiny_run: Path, tiny_cohort: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "evaluate", str(tiny_run), str(tiny_cohort), "--json",
                          "--ablations", "--split", "train", "--quiet", "--cache", str(tmp_path / "cache")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["overall"]["n"] > 0 and 0 <= res["overall"]["auroc"] <= 1
    lo, hi = res["overall"]["auroc_ci95"]
    assert lo is None or lo <= res["overall"]["auroc"] <= hi  # the tiny cohort may be too small for an interval
    assert res["ablations"]["without_notes"]["gate_notes_max"] == 0.0
    assert res["ablations"]["without_ct"]["gate_ct_max"] == 0.0
    assert set(res["per_site"]) == {p.name for p in _sites(tiny_cohort)}


def test_evaluate_all_scores_every_usable_case_of_an_evaluation_cohort(tiny_run: Path, tiny_cohort: Path,
                                                                        tmp_path: Path) -> None:
    from workbench.runtime.run import ALL_SPLITS, evaluate_run

    everything = evaluate_run(tiny_run, tiny_cohort, split="all", cache_dir=tmp_path / "cache", progress=False)
    per_split = [evaluate_run(tiny_run, tiny_cohort, split=s, cache_dir=tmp_path / "cache", progress=False)["overall"]
                 ["n"] for s in ALL_SPLITS]
    usable = sum(1 for site in _sites(tiny_cohort) for c in load_cases(site) if c.has_ct or c.has_note)
    assert everything["overall"]["n"] == sum(per_split) == usable


def test_predict_one_case_with_and_without_a_note(tiny_run: Path, tiny_cohort: Path, tmp_path: Path) -> None:
    model, calibration = load_run(tiny_run)
    case = next(c for c in load_cases(_sites(tiny_cohort)[0]) if c.has_ct and c.has_note)
    pred = workbench.predict(model, case, calibration=calibration)
    assert 0 < pred.probability < 1 and pred.present == {"ct": True, "notes": True}
    assert sum(pred.gate.values()) == pytest.approx(1.0)
    no_note = workbench.predict(model, replace(case, note=None))
    assert no_note.gate["notes"] == 0.0 and no_note.present["notes"] is False
    no_ct = workbench.predict(model, replace(case, series_dir=None, nodule_lps_mm=None))
    assert no_ct.gate["ct"] == 0.0
    with pytest.raises(CaseError, match=case.case_id):
        workbench.predict(model, replace(case, note=None, series_dir=Path(tmp_path / "missing")))
