"""A data card for each generated site: aggregate figures only, never a case's PHI. It names the cohort's truth
(the risk function that drew the labels), since a brock and a shifted cohort look alike file by file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from workbench.atomic import write_text
from workbench.cohort.risk_shifted import site_multipliers
from workbench.cohort.spec import SiteProfile

_LABELS_FROM = {
    "brock": "Labels are drawn from a published clinical risk model\n(Brock/PanCan + Mayo history terms + stated "
             "prior-imaging assumptions), not from pathology.",
    "shifted": "Labels are drawn\nfrom the `shifted` truth (`workbench/cohort/risk_shifted.py`), not from pathology: "
               "Brock's variables with\nanother diameter curve, a size x type interaction, site-varying coefficients, "
               "a CT-only bubbly lucency and\na notes-only asbestos exposure, not the published model.",
}


def _shifted_rows(site: SiteProfile, truths: list[dict]) -> str:
    """The shifted truth's own variables and this site's multipliers (empty for brock)."""
    n = len(truths)
    lucent = sum(bool(t.get("bubbly_lucency")) for t in truths)
    exposed = sum(t.get("asbestos_job") is not None for t in truths)
    emphysema, cancer = site_multipliers(site.name)
    return (f"| bubbly lucency of the index nodule (CT only) | {lucent} ({lucent / n:.1%}) |\n"
            f"| asbestos exposure (notes only) | {exposed} ({exposed / n:.1%}) |\n"
            f"| this site's multipliers (emphysema, prior cancer) | {emphysema:g}, {cancer:g} |\n")


def site_card_text(site: SiteProfile, truths: list[dict], truth: str = "brock") -> str:
    n = len(truths)
    labels = np.array([t["label"] for t in truths])
    splits = Counter(t["split"] for t in truths)
    both = sum(t["has_ct"] and t["has_note"] for t in truths)
    ct_only = sum(t["has_ct"] and not t["has_note"] for t in truths)
    note_only = sum(t["has_note"] and not t["has_ct"] for t in truths)
    diam = np.array([t["diameter_mm"] for t in truths])
    types = Counter(t["nodule_type"] for t in truths)
    s = site.scanner
    extra_rows = _shifted_rows(site, truths) if truth == "shifted" else ""
    same = ("two coefficients of the risk function vary by site" if truth == "shifted"
            else "the risk function is the same at every site")
    return f"""# Data card: {site.name} (SYNTHETIC)

**This site's data is synthetic.** No patient exists behind any case. Every CT, note, name, date and
identifier was made by the workbench's generator (`workbench cohort`), documented in
`data_cards/synthetic_cohort.md` of the project. {_LABELS_FROM[truth]}

## Use
- May be used for: developing and testing the workbench, teaching, benchmarking methods against a known
  ground truth (the best possible AUROC is computable from `truth.jsonl`).
- Must not be used for: any clinical decision, estimating real-world performance, or claims about real
  populations. The headers and notes contain *fake* PHI on purpose, to exercise de-identification; treat
  the folder as if it were real PHI anyway.

## Contents
| item | value |
| --- | --- |
| cases | {n} |
| truth (risk function) | {truth} |
| malignant (label 1) | {int(labels.sum())} ({labels.mean():.1%}) |
| splits | {", ".join(f"{k} {v}" for k, v in sorted(splits.items()))} |
| CT + note / CT only / note only | {both} / {ct_only} / {note_only} |
| index nodule diameter (mm), median [min-max] | {np.median(diam):.1f} [{diam.min():.1f}-{diam.max():.1f}] |
| nodule types | {", ".join(f"{k} {v}" for k, v in sorted(types.items()))} |
| note styles | {", ".join(site.note_styles)} |
{extra_rows}
## Who this site sees (its distributions; {same})
age mean {site.age_mean:.0f}, female {site.female_p:.0%}, family history {site.family_history_p:.0%},
ever smokers {site.ever_smoker_p:.0%}, prior extrathoracic cancer {site.prior_cancer_p:.0%}, prior CT mentioned
{site.prior_ct_p:.0%}, emphysema {site.emphysema_p:.0%}, log-diameter mean {site.diameter_log_mean:.2f}
(sd {site.diameter_log_sd:.2f}), missing note {site.missing_note_p:.0%}, missing CT {site.missing_ct_p:.0%}.

## Scanner
{s.manufacturer} {s.model}: {s.rows}x{s.columns} pixels at {s.pixel_spacing_mm} mm, {s.slice_spacing_mm} mm slices,
noise {s.noise_hu} HU, kernel blur {s.kernel_sigma_mm} mm, calibration offset {s.hu_offset:+.0f} HU, {s.kvp:.0f} kVp,
transfer syntax {s.transfer_syntax}.

## Files
`manifest.csv` (case_id, series_dir, nodule centre in DICOM patient coordinates LPS mm, note_id, label, split),
`notes.jsonl` (raw notes with fake PHI), `dicom/<case_id>/` (one CT Image Storage file per slice).
The truth of every variable lives only in the cohort's `truth.jsonl`, which the prediction path never reads.
"""


def write_site_card(site_dir: Path, site: SiteProfile, truths: list[dict], truth: str = "brock") -> None:
    write_text(site_dir / "DATA_CARD.md", site_card_text(site, truths, truth))
