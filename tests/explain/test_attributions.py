"""Attributions with known answers: a linear model's Integrated Gradients in closed form; a case without its note."""

from __future__ import annotations

import numpy as np
import torch

from workbench.explain.attributions import explain, integrated_gradients, merge_word_pieces
from workbench.models import build_model


def test_integrated_gradients_of_a_linear_model_are_weight_times_displacement() -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 1)
    x, base = torch.randn(1, 12), torch.full((1, 12), 0.25)
    attr, gap = integrated_gradients(lambda t: lin(t).squeeze(-1), x, base, steps=8)
    torch.testing.assert_close(attr, lin.weight.detach() * (x - base), atol=1e-5, rtol=1e-4)
    assert gap < 1e-4  # completeness: the attributions sum to f(x) - f(baseline)


def test_word_pieces_merge_into_words_and_their_scores_add() -> None:
    words, s = merge_word_pieces(["spic", "##ulated", "nodule", "##s", "in"], np.array([1.0, 2.0, 0.5, 0.25, -1.0]))
    assert words == ["spiculated", "nodules", "in"] and s.tolist() == [3.0, 0.75, -1.0]


def test_a_case_without_its_note_is_explained_and_says_so() -> None:
    from tests.helpers.cases import random_cases, tiny_config

    torch.manual_seed(0)
    model = build_model(tiny_config())
    data = random_cases(6)
    both = explain(model, data.batch(torch.tensor([0])), "c0", steps=8)
    assert both.ct_attribution is not None and both.ct_attribution.shape == (16, 16, 16)
    assert both.word_attribution is not None and len(both.words) == len(both.word_attribution) > 0
    assert both.ct_completeness_gap is not None and both.ct_completeness_gap < 0.05 * max(1.0, abs(both.logit))
    assert abs(sum(both.rollout.values()) - 1) < 1e-6 and not both.notes
    no_note = explain(model, data.batch(torch.tensor([2])), "c2", steps=8)  # case 2 has no note
    assert no_note.word_attribution is None and no_note.gate["notes"] == 0.0 and no_note.present["notes"] is False
    assert any("no note" in n for n in no_note.notes) and no_note.ct_attribution is not None
    no_ct = explain(model, data.batch(torch.tensor([3])), "c3", steps=8)  # case 3 has no CT
    assert no_ct.ct_attribution is None and no_ct.gate["ct"] == 0.0 and any("no CT" in n for n in no_ct.notes)
    assert no_ct.summary()["top_words"]


def test_explain_command_writes_files_readers_open_and_no_phi(tiny_run, tiny_cohort, tmp_path) -> None:  # noqa: ANN001
    import json
    import subprocess
    import sys

    from PIL import Image

    from workbench.data.case import load_cases

    site = sorted(p for p in tiny_cohort.iterdir() if (p / "manifest.csv").exists())[0]
    case = next(c for c in load_cases(site) if c.split == "test")
    out = tmp_path / "exp"
    cmd = [sys.executable, "-m", "workbench.cli", "explain", str(tiny_run), case.case_id, "--site", str(site),
           "--out", str(out), "--steps", "8"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "explanation.json").read_text())
    assert summary["case_id"] == case.case_id and 0 <= summary["probability"] <= 1
    assert abs(sum(summary["gate"].values()) - 1) < 1e-6
    for png in out.glob("*.png"):
        assert Image.open(png).size[0] > 100
    arrays = np.load(out / "explanation.npz")
    if summary["present"].get("ct"):
        assert arrays["ct_attribution"].shape == arrays["ct_patch"].shape and (out / "ct_slices.png").exists()
    from tests.helpers.cohort import truth_phi

    phi = truth_phi(tiny_cohort)
    texts = [p.read_text(errors="ignore") for p in out.iterdir() if p.suffix in (".json", ".html")]
    assert phi and not any(s in t for s in phi for t in texts)
    bad = subprocess.run([*cmd[:5], "no-such-case", *cmd[6:]], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no-such-case" in bad.stderr and "manifest.csv" in bad.stderr


def test_calibrated_run_explains_with_set_interval_refer_and_same_site_similar_cases(tiny_run, tiny_cohort,  # noqa: ANN001
                                                                                      tmp_path) -> None:
    import json
    import shutil
    import subprocess
    import sys

    from workbench.data.case import load_cases

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    res = subprocess.run([sys.executable, "-m", "workbench.cli", "calibrate", str(run), str(tiny_cohort), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    sites = sorted(p.name for p in tiny_cohort.iterdir() if (p / "manifest.csv").exists())
    assert sorted(summary["sites"]) == sites
    assert all((run / "similar" / s / "index.faiss").is_file() for s in sites) and (run / "uncertainty.json").is_file()
    site = tiny_cohort / sites[0]
    case = next(c for c in load_cases(site) if c.split == "test")
    out = tmp_path / "exp"
    res = subprocess.run([sys.executable, "-m", "workbench.cli", "explain", str(run), case.case_id, "--site", str(site),
                          "--out", str(out), "--steps", "4"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    exp = json.loads((out / "explanation.json").read_text())
    u = exp["uncertainty"]
    assert set(u["prediction_set"]) <= {"benign", "malignant"} and u["refer"] == (len(u["prediction_set"]) != 1
                                                                                   or bool(u["out_of_distribution"]))
    assert 0 <= u["interval"][0] <= u["interval"][1] <= 1 and u["calibrated_by"] == sites[0]
    train_ids = {c.case_id for c in load_cases(site) if c.split == "train"}
    assert exp["similar_cases"] and all(s["site"] == sites[0] and s["case_id"] in train_ids for s in exp["similar_cases"])
    # no PHI of the truth in what the RUN now holds or the explanation wrote (the notes there are de-identified)
    from tests.helpers.cohort import phi_in, truth_phi

    phi = truth_phi(tiny_cohort)
    files = [*out.iterdir(), run / "uncertainty.json", *(run / "similar").glob("*/cases.json")]
    texts = {p: p.read_text(errors="ignore") for p in files if p.suffix in (".json", ".html")}
    leaks = sorted({(s, str(p)) for p, t in texts.items() for s in phi_in(phi, t)})  # whole tokens, named when found
    assert any(s["note"] for s in exp["similar_cases"]) and not leaks, leaks


def test_the_entry_point_explains_a_case_read_from_its_site(tiny_run, tiny_cohort) -> None:  # noqa: ANN001
    import workbench.explain
    from workbench.data.case import load_cases
    from workbench.runtime.run import load_run

    model, _ = load_run(tiny_run)
    site = sorted(p for p in tiny_cohort.iterdir() if (p / "manifest.csv").exists())[0]
    case = next(c for c in load_cases(site) if c.split == "test")
    exp = workbench.explain.explain(model, case, steps=4)
    assert isinstance(exp, workbench.explain.Explanation) and exp.case_id == case.case_id
    assert abs(sum(exp.gate.values()) - 1) < 1e-6 and (exp.ct_attribution is not None) == exp.present["ct"]
