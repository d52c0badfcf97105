"""The ``shifted`` truth (risk_shifted.py): Brock's variables related to malignancy as the published model is not,
plus a CT-only bubbly lucency and a notes-only asbestos exposure; and a brock cohort that stays what it was."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from workbench.bench.cohort_bench import full_preset_truth, run_cohort_bench
from workbench.cli import main
from workbench.cohort import risk, risk_shifted
from workbench.cohort.ceilings import ceilings
from workbench.cohort.config import CohortConfig
from workbench.cohort.generate import generate_cohort, nodules_for, read_truth
from workbench.cohort.identity import make_identity, sample_visit_date
from workbench.cohort.notes import EVAL_STYLE, SITE_STYLES, write_note
from workbench.cohort.phantom import NODULE_HU, RenderedCT, render_chest
from workbench.cohort.sample import case_rng, case_truth, sample_site_truths, sample_truth
from workbench.cohort.sites import default_sites
from workbench.cohort.spec import NoduleSpec, PatientTruth
from workbench.data import load_ct_series
from workbench.data.deid import deidentify
from workbench.errors import CohortError
from workbench.metrics import fit_logistic

# Every field PatientTruth had before the shifted truth existed.
OLD_FIELDS = ("case_id", "site", "split", "age", "female", "family_history", "smoking", "pack_years", "prior_cancer",
              "prior_cancer_site", "prior_ct", "prior_ct_years", "diameter_mm", "nodule_type", "spiculated", "lobe",
              "nodule_count", "emphysema", "emphysema_in_note", "has_ct", "has_note", "logit", "risk", "label")
# sha256 (first 16 hex) of seed 7's brock truths (4 sites x 25 cases, OLD_FIELDS), of the notes of the first 10
# cases per site and of two rendered CTs, measured with the generator BEFORE the shifted truth was added.
BROCK_TRUTH_DIGEST = "a030b56175572d14"
BROCK_NOTES_DIGEST = "cdcd8e29a11fbcd1"
BROCK_IMAGES_DIGEST = "a4c2d18e2d6ef4b1"
SITES = default_sites(4)


def _note(truth: PatientTruth, site_index: int, case_index: int, seed: int, style: str | None = None) -> str:
    """The case's note as ``generate.make_case`` writes it (stream 1), optionally in another style."""
    rng = case_rng(seed, site_index, case_index, 1)
    site = SITES[site_index]
    ident = make_identity(rng, site, age=truth.age, female=truth.female, visit_date=sample_visit_date(rng))
    chosen = str(rng.choice(site.note_styles))
    return write_note(truth, ident, style or chosen, rng).text


def _render(truth: PatientTruth, site_index: int, case_index: int, seed: int) -> RenderedCT:
    rng = case_rng(seed, site_index, case_index, 2)
    return render_chest(nodules_for(truth, rng), truth.emphysema, SITES[site_index].scanner, rng)


def _centre_hu(hu: np.ndarray, origin: tuple[float, float, float], pixel_mm: float, slice_mm: float,
               centre: tuple[float, float, float]) -> float:
    """Mean HU of the 3 x 3 pixels around the nodule centre, in the slice that holds it ((slice, row, col) array)."""
    k = int(round((centre[2] - origin[2]) / slice_mm))
    r = int(round((centre[1] - origin[1]) / pixel_mm))
    c = int(round((centre[0] - origin[0]) / pixel_mm))
    return float(hu[k, r - 1 : r + 2, c - 1 : c + 2].mean())


# ------------------------------------------------------------------------------------------ brock unchanged


def test_brock_cohort_is_what_it_was_before_the_shifted_truth() -> None:
    """Truth values, notes and pixels of brock cases equal those made before the shifted truth existed."""
    truths: dict[tuple[int, int], PatientTruth] = {}
    h = hashlib.sha256()
    for si, site in enumerate(SITES):
        for ci, t in enumerate(sample_site_truths(site, si, 25, 7)):
            d = asdict(t)
            h.update(json.dumps({k: d[k] for k in OLD_FIELDS}, sort_keys=True).encode())
            truths[si, ci] = t
            assert (t.truth, t.bubbly_lucency, t.asbestos_job) == ("brock", False, None)
    assert h.hexdigest()[:16] == BROCK_TRUTH_DIGEST
    notes = hashlib.sha256()
    for si in range(4):
        for ci in range(10):
            notes.update(_note(truths[si, ci], si, ci, 7).encode())
    assert notes.hexdigest()[:16] == BROCK_NOTES_DIGEST
    images = hashlib.sha256()
    for si, ci in ((0, 1), (2, 3)):
        images.update(_render(truths[si, ci], si, ci, 7).hu.tobytes())
    assert images.hexdigest()[:16] == BROCK_IMAGES_DIGEST


def test_old_truth_files_load_as_brock(tmp_path: Path) -> None:
    t = sample_site_truths(SITES[0], 0, 1, 3)[0]
    (tmp_path / "truth.jsonl").write_text(json.dumps({k: asdict(t)[k] for k in OLD_FIELDS}) + "\n")
    (old,) = read_truth(tmp_path)
    assert old == t and old.truth == "brock" and not old.bubbly_lucency and old.asbestos_job is None


def test_truth_names_are_checked() -> None:
    with pytest.raises(CohortError, match="unknown truth 'mayo'"):
        CohortConfig(truth="mayo")
    with pytest.raises(CohortError, match="extra_rng"):
        sample_truth(SITES[0], "x", case_rng(0, 0, 0, 0), truth="shifted")
    with pytest.raises(CohortError, match="unknown truth"):
        run_cohort_bench(truth="mayo")


# ------------------------------------------------------------------------------------------- the risk function


def test_shifted_logit_matches_a_hand_computed_case() -> None:
    # 70-year-old woman at the screening site (hospital_c), 40 pack-years, family history, emphysema, prior breast
    # cancer, a 12 mm part-solid spiculated upper-lobe nodule of 2, growing, bubbly, asbestos exposure.
    t = PatientTruth(case_id="x", site="hospital_c", split="test", age=70, female=True, family_history=True,
                     smoking="former", pack_years=40, prior_cancer=True, prior_cancer_site="breast",
                     prior_ct="growing", prior_ct_years=1.0, diameter_mm=12.0, nodule_type="part_solid",
                     spiculated=True, lobe="RUL", nodule_count=2, emphysema=True, emphysema_in_note=False,
                     has_ct=True, has_note=True, logit=0.0, risk=0.0, label=0, truth="shifted", bubbly_lucency=True,
                     asbestos_job="plumber")
    size = 6.5 / (1 + math.exp(-5.0 * math.log(12.0 / 9.0)))
    expected = (-6.7892 + 0.0287 * 8 + 0.6011 + 0.2961 + 0.6581 - 0.0824 * (2 - 4) + 0.7729 + size
                + 0.6 * 1.8 + 1.3388 * 0.8 + 1.0 * math.log(1 + 40 / 10) + 2.0 + 2.0 + 1.5
                + risk_shifted.SHIFTED_ENRICHMENT)
    assert risk_shifted.shifted_logit(t) == pytest.approx(expected, abs=1e-9)
    # site-varying coefficients: the same patient at the community hospital (0.7, 1.3)
    assert risk_shifted.shifted_logit(replace(t, site="hospital_b")) == pytest.approx(
        expected - 0.6 * (1.8 - 0.7) - 1.3388 * (0.8 - 1.3), abs=1e-9)
    assert risk_shifted.site_multipliers("hospital_g") == risk_shifted.site_multipliers("hospital_c")  # archetype
    assert risk_shifted.site_multipliers("st_elsewhere") == (1.0, 1.0)
    # Brock's truth ignores the site and the shifted-only variables
    assert risk.truth_logit(replace(t, site="hospital_b", bubbly_lucency=False, asbestos_job=None)) == risk.truth_logit(t)


def test_size_curve_and_its_type_interaction_are_not_brocks() -> None:
    brock = lambda d: risk.BROCK_SIZE * ((d / 10.0) ** -0.5 - 1.58113883)  # noqa: E731
    shifted = risk_shifted.size_term
    # Brock is concave: 3 -> 5 mm weighs more than 10 -> 15 mm; the shifted curve the other way round
    assert brock(5) - brock(3) > 2 * (brock(15) - brock(10))
    assert shifted(15, "solid") - shifted(10, "solid") > 5 * (shifted(5, "solid") - shifted(3, "solid"))
    # size x type: from 6 to 12 mm a part-solid nodule gains most, a non-solid one least (Brock: the same for all)
    gain = {k: shifted(12, k) - shifted(6, k) for k in ("solid", "part_solid", "non_solid")}
    assert gain["part_solid"] > gain["solid"] + 0.5 > gain["non_solid"] + 1.5


def test_shifted_truth_shares_the_brock_variables_and_label_draw_but_not_the_risk() -> None:
    """Same seed: every Brock variable equal; the logits correlate clearly below 1."""
    brock, shifted = [], []
    for si, site in enumerate(SITES):
        brock += sample_site_truths(site, si, 800, 11)
        shifted += sample_site_truths(site, si, 800, 11, "shifted")
    for b, s in zip(brock, shifted, strict=True):
        assert all(getattr(b, k) == getattr(s, k) for k in OLD_FIELDS if k not in ("logit", "risk", "label"))
        assert s.truth == "shifted" and s.logit == pytest.approx(risk_shifted.shifted_logit(s), abs=1e-5)
        # one uniform draw decides both labels: the higher risk's label is never the lower one
        assert (s.label >= b.label) if s.risk >= b.risk else (s.label <= b.label)
    r = float(np.corrcoef([t.logit for t in brock], [t.logit for t in shifted])[0, 1])
    assert 0.6 < r < 0.93, r
    lucent = [t for t in shifted if t.bubbly_lucency]
    assert lucent and min(t.diameter_mm for t in lucent) >= 6.0
    assert 0.08 < len(lucent) / len(shifted) < 0.2
    assert 0.06 < np.mean([t.asbestos_exposure for t in shifted]) < 0.16


def test_shifted_prevalence_per_site_is_in_brocks_range_and_labels_follow_the_logit() -> None:
    for i, site in enumerate(SITES):
        truths = sample_site_truths(site, i, 3000, seed=123, truth="shifted")
        y = np.array([t.label for t in truths])
        assert 0.19 <= y.mean() <= 0.32, (site.name, y.mean())
        assert 0.19 <= np.mean([t.risk for t in truths]) <= 0.32, site.name
        w = fit_logistic(np.array([[t.logit] for t in truths]), y)
        assert abs(w[0]) < 0.2 and abs(w[1] - 1.0) < 0.15, (site.name, w)


def test_shifted_ceilings_and_what_brock_knowledge_leaves_out() -> None:
    truths = [t for i, s in enumerate(SITES) for t in sample_site_truths(s, i, 1500, 4, "shifted")]
    c = ceilings(truths)
    assert set(c) == {"bayes", "ct_only_ceiling", "notes_only_ceiling", "brock_oracle"}
    assert c["bayes"] > c["ct_only_ceiling"] > c["notes_only_ceiling"] > 0.6
    assert c["bayes"] > c["brock_oracle"] + 0.05
    with pytest.raises(CohortError, match="records that follow the shifted truth"):
        ceilings(truths, "brock")
    with pytest.raises(CohortError, match="brock, shifted"):
        ceilings(truths + sample_site_truths(SITES[0], 0, 50, 4))
    bench = run_cohort_bench(truth="shifted")  # the full preset, sampled
    assert bench["truth"] == "shifted" and bench["n_cases"] == 2000
    assert bench["bayes"] > bench["ct_only_ceiling"] > bench["ct_only_taught"]
    assert bench["bayes"] > bench["both_taught"] and bench["notes_only_ceiling"] > bench["notes_only_taught"]
    assert all(0.17 <= p <= 0.35 for p in bench["prevalence"].values()), bench["prevalence"]
    brock = run_cohort_bench()
    assert brock["truth"] == "brock" and "ct_only_taught" not in brock
    assert {k: brock[k] for k in c} == {k: round(v, 4) for k, v in ceilings(full_preset_truth()).items()}


# ---------------------------------------------------------------------------------------- what the CT shows


@pytest.mark.parametrize("site_index", [1, 3])  # 2.5 mm soft-kernel slices; 1.25 mm slices
def test_bubbly_lucency_shows_at_the_nodule_centre(site_index: int) -> None:
    """Rendered with and without the lucency from the same image stream: only the nodule changes, and the HU at
    its centre, below the type's own HU, separates lucent nodules from plain ones (small plain nodules read a
    little below their HU from partial volume; air pockets take the centre far lower)."""
    scanner = SITES[site_index].scanner
    drops: dict[bool, list[float]] = {False: [], True: []}
    for seed, (kind, diameter) in enumerate((("solid", 7.0), ("part_solid", 9.0), ("non_solid", 8.0))):
        cts = {}
        for lucent in (False, True):
            spec = NoduleSpec(diameter, kind, seed == 1, "RLL", is_index=True, bubbly_lucency=lucent)
            ct = render_chest([spec], False, scanner, np.random.default_rng([site_index, seed]))
            own = NODULE_HU[kind] + scanner.hu_offset
            centre = ct.nodule_centers_lps[0]
            drops[lucent].append(own - _centre_hu(ct.hu, ct.origin_lps, ct.pixel_spacing_mm, ct.slice_spacing_mm,
                                                  centre))
            cts[lucent] = ct
        changed = np.argwhere(cts[True].hu != cts[False].hu)
        assert len(changed) > 0
        extent = (changed.max(0) - changed.min(0) + 1) * np.array([scanner.slice_spacing_mm, *2 * [scanner.pixel_spacing_mm]])
        assert np.all(extent <= diameter + 3 * scanner.slice_spacing_mm), (kind, extent)
    # paired: the same nodule reads at least 60 HU lower at its centre; unpaired: a threshold separates them all
    assert all(lucent - plain > 60 for plain, lucent in zip(drops[False], drops[True], strict=True)), drops
    assert min(drops[True]) > max(drops[False]) + 40, drops


# ---------------------------------------------------------------------------------------- what the note says


def test_note_mentions_asbestos_exactly_when_true_and_deid_keeps_it() -> None:
    seen = 0
    for i in range(120):
        si = i % 4
        shifted = case_truth(SITES[si], si, i, 21, "shifted")
        brock = case_truth(SITES[si], si, i, 21)
        for style in (None, *SITE_STYLES, EVAL_STYLE):
            text_b = _note(brock, si, i, 21, style)
            text_s = _note(shifted, si, i, 21, style)
            assert "asbestos" not in text_b.lower()
            assert ("asbestos" in text_s) == shifted.asbestos_exposure, (style, shifted.case_id)
            if not shifted.asbestos_exposure:
                assert text_s == text_b
                continue
            seen += 1
            assert shifted.asbestos_job in text_s
            # one sentence inserted, nothing else changed (writing it draws no random number)
            start = next(k for k, (a, b) in enumerate(zip(text_b, text_s, strict=False)) if a != b)
            inserted = len(text_s) - len(text_b)
            assert text_s[:start] + text_s[start + inserted :] == text_b
            assert "asbestos" in text_s[start : start + inserted]
            clean = deidentify(text_s)
            assert "asbestos" in clean and shifted.asbestos_job in clean, (style, clean)
    assert seen >= 30


# ------------------------------------------------------------------------------- the command and the folder


def test_cli_writes_a_shifted_cohort_and_refuses_the_other_truth(tmp_path: Path) -> None:
    # seed 8, 2 sites x 3 patients holds a bubbly nodule with a CT and asbestos exposures with a note
    out = tmp_path / "shifted"
    assert main(["cohort", str(out), "--preset", "tiny", "--sites", "2", "--patients", "3", "--seed", "8",
                 "--workers", "1", "--quiet", "--truth", "shifted"]) == 0
    records = [json.loads(line) for line in (out / "truth.jsonl").read_text().splitlines()]
    assert {r["truth"] for r in records} == {"shifted"}
    request = json.loads((out / "cohort.json").read_text())["request"]
    assert request["truth"] == "shifted"
    brock_request = {k: v for k, v in request.items() if k != "truth"}
    for site in ("hospital_a", "hospital_b"):
        card = (out / site / "DATA_CARD.md").read_text()
        assert "| truth (risk function) | shifted |" in card and "asbestos exposure (notes only)" in card
    # the written truth is the sampled one
    written = {t.case_id: t for t in read_truth(out)}
    for i, site in enumerate(default_sites(2)):
        for t in sample_site_truths(site, i, 3, 8, "shifted"):
            assert written[t.case_id] == t
    # notes mention asbestos exactly for the exposed
    notes = {}
    for site in ("hospital_a", "hospital_b"):
        notes.update({n["note_id"]: n["text"] for n in map(json.loads, (out / site / "notes.jsonl").read_text().splitlines())})
    exposed = 0
    for r in records:
        if r["has_note"]:
            note_id = f"{r['site']}-n{int(r['case_id'][-4:]):05d}"
            assert ("asbestos" in notes[note_id]) == (r["asbestos_job"] is not None), r["case_id"]
            exposed += r["asbestos_job"] is not None
        assert r["note_facts"].get("asbestos") is None or r["asbestos_job"] is not None
    assert exposed >= 1
    # a bubbly nodule reads far below its type's HU at the centre, in the DICOM files
    lucent = [r for r in records if r["bubbly_lucency"] and r["has_ct"]]
    assert lucent
    for r in lucent:
        img = load_ct_series(out / r["site"] / "dicom" / r["case_id"])
        x, y, z = r["nodule_center_lps"]
        i, j, k = np.rint(np.linalg.inv(img.affine.numpy()) @ np.array([-x, -y, z, 1.0]))[:3].astype(int)
        centre = float(img[0].numpy()[i - 1 : i + 2, j - 1 : j + 2, k].mean())
        own = NODULE_HU[r["nodule_type"]] + default_sites(2)[0 if r["site"] == "hospital_a" else 1].scanner.hu_offset
        assert own - centre > 100, (r["case_id"], centre)
    # the other truth is refused in this folder, and a shifted request is refused in a brock folder
    with pytest.raises(CohortError, match="holds a cohort of the shifted truth, not brock"):
        generate_cohort(out, CohortConfig(preset="tiny", sites=2, patients=3, seed=8, workers=1), progress=False)
    brock_out = tmp_path / "brock"
    generate_cohort(brock_out, CohortConfig(preset="tiny", sites=1, patients=1, seed=8, workers=1), progress=False)
    held = json.loads((brock_out / "cohort.json").read_text())["request"]
    assert "truth" not in held and held.keys() == brock_request.keys()
    assert main(["cohort", str(brock_out), "--preset", "tiny", "--sites", "1", "--patients", "1", "--seed", "8",
                 "--quiet", "--truth", "shifted"]) == 2
    # the bench refuses to label a cohort's numbers with a truth they do not have
    with pytest.raises(CohortError, match="follows the shifted truth, not brock"):
        run_cohort_bench(cohort=out)
