"""The typed hand-off: one ``CaseExplanation`` in memory, written as the explanation's files and turned into a
report's content, both saying the same thing (same risk, same words, the very same pictures)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.cases import random_cases, tiny_config
from workbench.data.case import Case
from workbench.explain.attributions import explain
from workbench.explain.case import CaseExplanation
from workbench.explain.export import write_explanation
from workbench.models import build_model
from workbench.report.build import report_content
from workbench.runtime.predict import Prediction
from workbench.runtime.run_uncertainty import Assessment


def _case_explanation(tmp_path: Path, calibrated: bool) -> CaseExplanation:
    torch.manual_seed(0)
    model = build_model(tiny_config())
    batch = random_cases(6).batch(torch.tensor([0]))
    exp = explain(model, batch, "c0", steps=4)
    pred = Prediction("c0", probability=0.42, logit=exp.logit, gate=exp.gate, present=exp.present, inputs=batch)
    case = Case("c0", "site_a", "test", None, (12.0, -3.0, 40.0), "a note")
    a = Assessment(0.4, (0.3, 0.5), ["benign", "malignant"], True, ["the 90% set holds both classes"], None, None,
                   "site_a", interval_calib_cases=12) if calibrated else None
    similar = [{"case_id": "c9", "site": "site_a", "label": 1, "similarity": 0.9, "note": "[name] smoker"}]
    return CaseExplanation(case, pred, exp, a, similar if calibrated else [], run=tmp_path / "run", steps=4)


@pytest.mark.parametrize("calibrated", [True, False])
def test_the_files_and_the_report_come_from_one_explanation(tmp_path: Path, calibrated: bool) -> None:
    ce = _case_explanation(tmp_path, calibrated)
    out = tmp_path / "exp"
    summary = write_explanation(ce, out)
    assert json.loads((out / "explanation.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["files"] == sorted(p.name for p in out.iterdir() if p.name != "explanation.json") + [
        "explanation.json"] == ["ct_slices.png", "explanation.npz", "gate.png", "note.html", "note.png",
                                "explanation.json"]
    # one risk: the assessment's (inside its interval) when calibrated, else the prediction's
    assert summary["probability"] == (0.4 if calibrated else 0.42) and summary["steps"] == 4 and summary["run"] == str(tmp_path / "run")
    assert summary["uncertainty"] == (ce.assessment.to_dict() if ce.assessment else None)
    assert summary["similar_cases"] == ce.similar
    arrays = np.load(out / "explanation.npz")
    assert np.array_equal(arrays["ct_patch"], ce.prediction.inputs["ct_patch"][0, 0].numpy())
    assert np.array_equal(arrays["ct_attribution"], ce.explanation.ct_attribution)

    content = report_content(ce, tmp_path / "site_a")
    assert content.probability == (0.4 if calibrated else 0.42) and content.refer is calibrated
    assert content.interval == ((0.3, 0.5) if calibrated else None)
    assert content.interval_method == ("inductive Venn-Abers on calib, 12 cases" if calibrated else None)
    assert content.top_phrases == [tuple(w) for w in summary["top_words"]] and content.top_phrases
    assert content.modality_contributions == summary["gate"] and content.attention_rollout == summary["rollout"]
    assert content.finding_site == "left lung" and content.source is None
    # no CT series to measure the nodule in (a random patch only): no size, and the report says why
    assert content.diameter_mm is None and content.lung_rads is None
    assert "size: not measured (no CT series or no nodule mark)" in content.notes
    assert [k.png for k in content.key_images] == [(out / f).read_bytes() for f in
                                                   ("ct_slices.png", "note.png", "gate.png")]
    assert "guidelines: not applied (the nodule was not measured)" in content.notes
    assert content.recommendation is None and content.brock_risk is None  # no size: no guideline is guessed
    assert content.notes[:-2] == summary["notes"] and content.model.version == "unknown"


def test_a_second_write_replaces_the_folder_whole(tmp_path: Path) -> None:
    ce = _case_explanation(tmp_path, calibrated=False)
    out = tmp_path / "exp"
    write_explanation(ce, out)
    (out / "stale.txt").write_text("from an older explanation")
    ce.explanation.word_attribution, ce.explanation.words = None, []  # now the note is not explained
    summary = write_explanation(ce, out)
    assert sorted(p.name for p in out.iterdir()) == ["ct_slices.png", "explanation.json", "explanation.npz",
                                                     "gate.png"] == sorted(summary["files"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]  # no temporary sibling left behind
