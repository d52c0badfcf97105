"""The model card prints what ``bench model`` measured: per site and per sex AUROC with intervals (issue 16)."""

from __future__ import annotations

from workbench.bench.model_card import render_model_card


def _result(**extra: object) -> dict:
    r = {"auroc": {"fused": 0.861, "ct_only": 0.80}, "fusion_gain": {"value": 0.061, "ci95": [0.03, 0.09]},
         "preset": "full", "n_test": 2000, "variants": {}}
    r.update(extra)
    return r


def test_the_card_prints_sites_sexes_intervals_and_the_marked_centre() -> None:
    card = render_model_card(_result(
        auroc_ci95={"fused": [0.842, 0.879]}, eval_cohort="full-seed1000003", eval_seed=1000003, n_eval=2000,
        n_seeds=5, per_site_auroc={"hospital_a": 0.871, "hospital_b": 0.802},
        per_site_auroc_ci95={"hospital_a": [0.83, 0.91], "hospital_b": [0.75, 0.85]},
        per_sex_auroc={"female": 0.866, "male": 0.855}, per_sex_auroc_ci95={"female": [0.84, 0.89], "male": [0.83, 0.88]},
        auroc_marked_centre=0.848, auroc_marked_centre_ci95=[0.826, 0.869]))
    assert "| fused (this model) | 0.861 | 0.842-0.879 |" in card
    assert "| hospital_b | 0.802 | 0.750-0.850 |" in card
    assert "| female | 0.866 | 0.840-0.890 |" in card and "| male | 0.855 | 0.830-0.880 |" in card
    assert "AUROC 0.848 (95% CI 0.826-0.869) against 0.861" in card
    assert "evaluation cohort `full-seed1000003` (seed 1000003, 2000 cases" in card and "5 training seeds" in card


def test_an_older_result_still_renders() -> None:
    card = render_model_card(_result())
    assert "`test` split, 2000 cases" in card and "| fused (this model) | 0.861 | n/a |" in card
    assert "by site" not in card and "reader marks" not in card
