"""The report's diameter against the truth: the plain measurement of the model's patch on the tiny cohort."""

from __future__ import annotations

import json

import numpy as np

from workbench.report.measure import volume_equivalent_diameter


def test_sphere_of_known_diameter_is_measured() -> None:
    g = (np.arange(32) - 16) * 1.25
    r = np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)
    patch = np.where(r <= 6.0, (40 + 1000) / 1400, (-850 + 1000) / 1400)  # a 12 mm soft-tissue ball in lung
    assert abs(volume_equivalent_diameter(patch) - 12.0) < 0.8
    assert volume_equivalent_diameter(np.full((32, 32, 32), 0.1)) is None  # nothing dense at the centre


def test_diameters_of_the_tiny_cohorts_solid_nodules_are_close_to_the_truth(tiny_cohort) -> None:  # noqa: ANN001
    from workbench.data.case import load_cases
    from workbench.models import build_model
    from workbench.models.model import ModelConfig
    from workbench.runtime.encode import encode_cases

    truth = {json.loads(line)["case_id"]: json.loads(line) for line in (tiny_cohort / "truth.jsonl").read_text().splitlines()}
    cases = [c for site in sorted(p for p in tiny_cohort.iterdir() if (p / "manifest.csv").exists())
             for c in load_cases(site) if c.has_ct and truth[c.case_id]["nodule_type"] == "solid"]
    data = encode_cases(cases, build_model(ModelConfig(modalities=("ct",))).tokenizer, modalities=("ct",), progress=False)
    errors = []
    for i, cid in enumerate(data.case_ids):
        d = volume_equivalent_diameter(data.tensors["ct_patch"][i, 0].float().numpy())
        assert d is not None, cid
        errors.append(abs(d - truth[cid]["diameter_mm"]))
    assert len(errors) >= 5 and float(np.median(errors)) < 2.5, errors
