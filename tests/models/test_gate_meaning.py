"""The gate means something (issue 3): on generated cases whose signal sits in the note, the trained model's
mean gate weight on notes exceeds that on CT; on large spiculated nodules with a bland note, the reverse.

The model is the benchmark's fused model (``tests/fixtures/fused_model``, written by ``workbench bench model``
on the full preset and copied here, 1.6 MB); the cases are new: drawn from the generator with a seed no cohort
uses and rendered here (CT series and note), so the test also runs the whole prediction path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import workbench
from workbench.cohort.generate import make_case
from workbench.cohort.sample import case_id_for, case_rng, sample_truth
from workbench.cohort.sites import default_sites
from workbench.data.cache import PreprocessCache
from workbench.data.case import Case
from workbench.models import load_model

FIXTURE = Path(__file__).parents[1] / "fixtures" / "fused_model"
SEED = 31_337
PER_GROUP = 8


def note_heavy(t) -> bool:  # strong prior-CT or history terms, small plain nodule
    return ((t.prior_ct in ("stable_2y", "growing") or t.prior_cancer) and t.diameter_mm < 8
            and not t.spiculated and t.nodule_type == "solid" and t.has_ct and t.has_note)


def ct_heavy(t) -> bool:  # large spiculated nodule, bland note
    return (t.diameter_mm >= 15 and t.spiculated and t.prior_ct == "none" and not t.prior_cancer
            and not t.family_history and t.has_ct and t.has_note)


def generated_cases(tmp: Path) -> dict[str, list[Case]]:
    site_index, site = 0, default_sites(4)[0]
    groups: dict[str, list[Case]] = {"note_heavy": [], "ct_heavy": []}
    ci = 0
    while min(len(v) for v in groups.values()) < PER_GROUP and ci < 5000:
        t = sample_truth(site, case_id_for(site, ci), case_rng(SEED, site_index, ci, 0))
        group = "note_heavy" if note_heavy(t) else "ct_heavy" if ct_heavy(t) else None
        if group and len(groups[group]) < PER_GROUP:
            rec = make_case(site, site_index, ci, SEED, tmp)
            row = rec["row"]
            groups[group].append(Case(
                case_id=row["case_id"], site=site.name, split=None, series_dir=tmp / row["series_dir"],
                nodule_lps_mm=(float(row["nodule_x_mm"]), float(row["nodule_y_mm"]), float(row["nodule_z_mm"])),
                note=rec["note"]["text"]))
        ci += 1
    return groups


@pytest.mark.slow
def test_gate_follows_where_the_evidence_is(tmp_path: Path) -> None:
    model = load_model(FIXTURE)
    cache = PreprocessCache(tmp_path / "cache")
    gates = {}
    for group, cases in generated_cases(tmp_path / "site").items():
        assert len(cases) == PER_GROUP
        preds = [workbench.predict(model, c, cache=cache) for c in cases]
        gates[group] = {m: float(np.mean([p.gate[m] for p in preds])) for m in ("ct", "notes")}
    assert gates["note_heavy"]["notes"] > gates["note_heavy"]["ct"], gates
    assert gates["ct_heavy"]["ct"] > gates["ct_heavy"]["notes"], gates
