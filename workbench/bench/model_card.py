"""The model card, filled from what a ``workbench bench model`` run measured.

``python -m workbench.bench.model_card bench/results/model.json [bench/results/model_cuda.json] > data_cards/model_card.md``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _f(v: Any, nd: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _ci(ci: Any, nd: int = 3) -> str:
    """A 95% interval as the card prints it ("0.812-0.861"), or "n/a" (an older JSON, or a reference point)."""
    return f"{_f(ci[0], nd)}-{_f(ci[1], nd)}" if isinstance(ci, list) and len(ci) == 2 and None not in ci else "n/a"


def _table(title: str, means: dict[str, Any], cis: dict[str, Any], names: dict[str, str] | None = None) -> list[str]:
    rows = [f"| {title} | AUROC | 95% CI |", "| --- | --- | --- |"]
    for k, v in means.items():
        rows.append(f"| {(names or {}).get(k, k)} | {_f(v)} | {_ci(cis.get(k))} |")
    return rows


def _trained_on(r: dict[str, Any]) -> str:
    """Where the variants trained: ``train_device`` (a GPU machine, bench/model_seeds_gpu.sh), else the machine."""
    devices = [d for d in r.get("train_device") or [] if d != "cpu"]
    return ", ".join(devices) if devices else str(r.get("machine"))


def _total_train_s(r: dict[str, Any]) -> float:
    """Training seconds of every variant and seed (``variants`` holds the per-seed mean when there are seeds)."""
    by_seed = r.get("variants_by_seed")
    if by_seed:
        return float(sum(x.get("train_seconds", 0) for runs in by_seed.values() for x in runs))
    return float(sum(x.get("train_seconds", 0) for x in r.get("variants", {}).values()))


def _scored_on(r: dict[str, Any]) -> str:
    """Where the figures come from: the evaluation cohort and the seeds (issue 16), or an older JSON's test split."""
    if r.get("eval_cohort"):
        return (f"evaluation cohort `{r['eval_cohort']}` (seed {r.get('eval_seed')}, {r.get('n_eval')} cases, no "
                f"model or choice has seen it), mean over {r.get('n_seeds')} training seeds with 95% intervals over "
                "seeds and cases")
    return f"`test` split, {r.get('n_test')} cases"


def _recipes(r: dict[str, Any]) -> list[str]:
    """Each variant's training recipe where it differs from the defaults, as chosen on val."""
    recipes = r.get("train_recipes") or {}
    if not recipes:
        return []
    fused = recipes.get("fused", {})
    others = "; ".join(f"{k}: {v['recipe']}" for k, v in recipes.items() if k != "fused")
    return [f"- Recipe chosen on `val` among six written down beforehand (`bench/results/recipe_sweep_val.jsonl`, "
            f"mean val AUROC over the seeds): this model `{fused.get('recipe', 'base')}` "
            f"({', '.join(f'{k} {v}' for k, v in fused.get('fields', {}).items()) or 'the defaults'}); "
            f"the comparison models each chose theirs the same way ({others})."]


def render_model_card(r: dict[str, Any], gpu: dict[str, Any] | None = None) -> str:
    a = r["auroc"]
    g = r["fusion_gain"]
    ge = r.get("gate_by_evidence", {})
    v = r.get("variants", {})
    lines = [
        "# Model card: modality-gated CT + note fusion for pulmonary-nodule malignancy risk",
        "",
        "**Decision support for research, not a diagnosis.** Every figure below comes from the synthetic cohort "
        "(`data_cards/synthetic_cohort.md`): generated chest CTs and notes whose labels follow a published risk model "
        "(Brock + Mayo history terms + prior-imaging terms). No real patient contributed data. The model has not been "
        "validated on real scans or notes and must not be used for patient care.",
        "",
        "## What it is",
        "- Inputs: one chest CT series with a clicked nodule centre (patient coordinates) and one clinical note "
        "(de-identified before it is read). Either may be missing; the prediction says which were used.",
        "- CT encoder: the CT reader, MONAI 3-D convolutions (GroupNorm, no in-place activations) over a 32^3 "
        "patch at 1.25 mm, a coarse 32^3 chest view (mean HU + LAA-950 emphysema share) and the nodule's position "
        "in the lung box, plus a finding token (an MLP over the pooled cells); 74 tokens. Pretrained to state "
        "diameter, type, spiculation, emphysema and upper-lobe location on 1,500 separate annotated phantoms (no "
        "malignancy label; `data_cards/ct_corpus.md`) and kept frozen: only its projections to the fusion width train."
        + (f" On held-out phantoms: diameter R^2 {_f(r['ct_reader'].get('diameter_r2'), 2)}, type accuracy "
           f"{_f(r['ct_reader'].get('nodule_type_accuracy'), 2)}, spiculation accuracy "
           f"{_f(r['ct_reader'].get('spiculated_accuracy'), 2)}." if r.get("ct_reader") else ""),
        "- Note encoder: the note reader, a 2-layer BERT-style `transformers` model (hidden 64) pretrained to state "
        "the facts of 6,000 separate synthetic notes (no malignancy label; `data_cards/note_corpus.md`) and kept "
        "frozen; WordPiece tokenizer learned only from the generator's templates and a medical word list; notes "
        "de-identified first; numbers carry their value.",
        "- Fusion: 2 transformer layers with a learned modality bias M[head, q_mod, k_mod] (cross-modality pairs "
        "start at -2), a softmax routing gate over the present modalities, and a linear head; prior correction and "
        "temperature and bias (Platt scaling) on the validation split.",
        f"- Trainable parameters: {r.get('trainable_params', 'n/a'):,}" if isinstance(r.get("trainable_params"), int)
        else "- Trainable parameters: n/a",
        "",
        "## Training",
        f"- Pooled `train` split of the {r.get('preset')} preset ({r.get('n_train', 'n/a')} cases, 4 synthetic hospitals); "
        "AdamW, warm-up + cosine, class-weighted loss, modality dropout 0.2, auxiliary per-modality loss, early "
        "stopping on `val` AUROC"
        + (f"; each variant trained once per training seed ({r['n_seeds']} seeds: initial weights, data order, "
           "dropout and flips)." if r.get("n_seeds") else "."),
        *_recipes(r),
        f"- Throughput on {_trained_on(r)}: {_f(r.get('train_samples_per_s'), 1)} training samples/s (batch 32, "
        "the frozen readers' outputs computed once per case; several trainings shared the device)."
        + (f" On {gpu.get('machine')}: {_f(gpu.get('train_samples_per_s'), 0)} samples/s "
           f"(batch {gpu.get('batch_size')}, {gpu.get('amp')} autocast)." if gpu else ""),
        "",
        f"## Evaluation ({_scored_on(r)})",
        "",
    ]
    names = {"fused": "fused (this model)", "ct_only": "CT-only model", "notes_only": "notes-only model",
             "late_fusion": "late fusion (no gate, no bias)", "brock_oracle": "Brock on the true variables",
             "bayes": "true risk (Bayes limit)", "ct_only_ceiling": "CT ceiling (true CT variables)",
             "notes_only_ceiling": "notes ceiling (true note variables)"}
    lines += _table("", {k: a.get(k) for k in names}, r.get("auroc_ci95", {}), names)
    if r.get("per_site_auroc"):
        lines += ["", "The fused model by site and by sex (the same cases; sex from the truth's `female`):", ""]
        lines += _table("site", r["per_site_auroc"], r.get("per_site_auroc_ci95", {}))
    if r.get("per_sex_auroc"):
        lines += [""] + _table("sex", r["per_sex_auroc"], r.get("per_sex_auroc_ci95", {}))
    lines += [
        "",
        f"- Fusion gain over CT alone: {_f(g['value'])} (95% paired bootstrap CI {_f(g['ci95'][0])} to {_f(g['ci95'][1])}).",
        f"- Calibration: ECE {_f(r.get('ece'))} after prior correction for the class weights (logit shift "
        f"{_f(r.get('calibration', {}).get('logit_shift'), 2)}) and Platt scaling on `val` "
        f"(T = {_f(r.get('calibration', {}).get('temperature'), 2)}, bias {_f(r.get('calibration', {}).get('bias'), 2)}); {_f(r.get('ece_uncalibrated'))} on raw logits; "
        f"the true risk itself scores ECE {_f(r.get('ece_true_risk'))} on the same {r.get('n_test')} cases (the floor of this estimate)."
        + (f" ECE 95% CI {_ci(r.get('ece_ci95'))}." if r.get("ece_ci95") else ""),
        *([f"- Nodule centre as a reader marks it (about 2 mm per axis, 10% of marks off by a nodule radius): "
            f"AUROC {_f(r.get('auroc_marked_centre'))} (95% CI {_ci(r.get('auroc_marked_centre_ci95'))}) against "
            f"{_f(a.get('fused'))} at the generator's exact centre."] if "auroc_marked_centre" in r else []),
        f"- Missing modality: notes removed, AUROC {_f(r.get('auroc_without_notes'))} (gate on notes at most "
        f"{_f(r.get('gate_notes_max_when_removed'), 1)}); CT removed, AUROC {_f(r.get('auroc_without_ct'))}.",
    ]
    if ge:
        nh, ch = ge.get("note_heavy", {}), ge.get("ct_heavy", {})
        lines.append(f"- Gate: where the truth puts the signal in the note ({nh.get('n')} cases) the mean weight is "
                     f"CT {_f(nh.get('ct'))} / notes {_f(nh.get('notes'))}; for large spiculated nodules with a "
                     f"bland history ({ch.get('n')} cases) CT {_f(ch.get('ct'))} / notes {_f(ch.get('notes'))}.")
    lines += [
        f"- One-case prediction on {r.get('machine')}: {_f(r.get('latency_ms_cpu'), 1)} ms median (warm preprocessing "
        f"cache, de-identification and tokenization included; forward pass alone {_f(r.get('latency_ms_cpu_forward_only'), 1)} ms)."
        + (f" On {gpu.get('machine')}: {_f(gpu.get('latency_ms_one_case_forward'), 2)} ms forward." if gpu else ""),
        "",
        "## Intended use and limits",
        "- For: research on multimodal fusion, federated and private training, and explanation, on synthetic or "
        "properly governed data; teaching; testing the workbench end to end.",
        "- Not for: any clinical decision, triage or screening of real patients. Real CT differs from the phantom "
        "(anatomy, artefacts, scanners); real notes differ from the templates; the risk function is a published "
        "model plus stated assumptions, not observed outcomes.",
        "- Known gaps: nodule count and any CT finding outside the patch and the 1 cm context are not seen; "
        "notes longer than 320 tokens are truncated; sites outside the four archetypes are out of distribution.",
        "- The nodule card beside the risk (size, type, lobe, Lung-RADS, Fleischner/BTS recommendation, Brock) is "
        "computed by rules, not by this model: measured from the CT at the radiologist's mark and read from the note "
        "by patterns (`workbench/runtime/measure.py`, `note_facts.py`, `guideline_card.py`); it is checked against the "
        "synthetic truth only (`bench/results/measure.json`), spiculation is weak (sensitivity 0.30), and its "
        "recommendation is decision support that a radiologist confirms.",
        "",
        f"Measured by `workbench bench model` (git {r.get('git_sha')}; the run is resumable and this invocation took "
        f"{r.get('wall_s')} s on {r.get('machine')}; training of the four variants {_total_train_s(r):.0f} s "
        f"in all on {_trained_on(r)}). "
        + ("Per-variant training: " + "; ".join(f"{k} best epoch {x.get('best_epoch')} of {x.get('epochs_run')}"
                                                  for k, x in v.items()) + "." if v else ""),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    result = json.loads(Path(sys.argv[1]).read_text())
    gpu = json.loads(Path(sys.argv[2]).read_text()) if len(sys.argv) > 2 else None
    sys.stdout.write(render_model_card(result, gpu))
