"""``make demo``: the main job on the embedded synthetic cohort, end to end as far as it is built:
cohort -> ingestion -> training of the fused model -> evaluation with each modality removed in turn."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.cohort.config import CohortConfig
from workbench.cohort.generate import generate_cohort
from workbench.data.ingest import ingest_site


def run_demo(out: Path, *, preset: str = "small") -> int:
    cohort = out / "cohort"
    print(f"[1/4] synthetic cohort ({preset}) -> {cohort}")
    s = generate_cohort(cohort, CohortConfig(preset=preset))
    print(f"      {s.n_cases} cases at {len(s.sites)} sites, {s.bytes_on_disk / 2**20:.0f} MB, {s.seconds:.0f} s")
    print("[2/4] ingestion of each site (check, preprocess, cache)")
    summaries = []
    for site in s.sites:
        rep = ingest_site(cohort / site, cache_dir=out / "cache")
        summaries.append(rep.summary())
    (out / "ingest_summary.json").write_text(json.dumps(summaries, indent=2))
    print(f"\n{'site':<12} {'cases':>5} {'usable':>6} {'ct+note':>7} {'ct':>4} {'note':>4} {'refused':>7} {'slice mm':>8}")
    for r in summaries:
        m = r["modalities"]
        sl = r["spacing_mm"]["slice"]
        print(f"{r['site']:<12} {r['cases']:>5} {r['usable']:>6} {m['ct_and_note']:>7} {m['ct_only']:>4} "
              f"{m['note_only']:>4} {len(r['refused']):>7} {sl['median'] if sl else '-':>8}")
    print(f"\nsummary: {out / 'ingest_summary.json'}; cohort data cards: {cohort}/*/DATA_CARD.md")
    _train_and_evaluate(out, cohort)
    return 0


def _note_reader(out: Path) -> Path:
    """A small note reader, pretrained on a separate synthetic note corpus (``workbench pretrain-notes``)."""
    from workbench.cohort.note_corpus import CLASSES, CORPUS_SEED, note_corpus
    from workbench.models.model import ModelConfig, build_model
    from workbench.train.pretrain_text import (
        ReaderConfig,
        pretrain_note_reader,
        reader_card,
        save_note_reader,
    )

    print(f"\n[3/4] pretrain the note reader on 2,000 separate synthetic notes (facts, no labels) -> {out}")
    if (out / "config.json").exists():
        return out
    config = ReaderConfig(n_notes=2000, epochs=2)
    corpus = note_corpus(config.n_notes)
    model = build_model(ModelConfig(modalities=("notes",)))
    losses = pretrain_note_reader(model, corpus.texts, corpus.facts, CLASSES, config)
    return save_note_reader(model, out, reader_card(config, CORPUS_SEED, losses))


def _train_and_evaluate(out: Path, cohort: Path) -> None:
    from workbench.jsonout import jsonable
    from workbench.models.model import ModelConfig
    from workbench.models.text_encoder import TextEncoderConfig
    from workbench.train.run import evaluate_run, train_run
    from workbench.train.trainer import TrainConfig

    reader = _note_reader(out / "note_reader")
    run = out / "run"
    print(f"\n[4/4] train the modality-gated model on the pooled train split -> {run}")
    config = ModelConfig(text=TextEncoderConfig(path=str(reader), freeze=True))
    log = train_run([cohort], run, model_config=config, train_config=TrainConfig(epochs=20, patience=0),
                    cache_dir=out / "cache")
    print(f"      {log['n_train']} training cases, {log['trainable_params']:,} parameters, best epoch "
          f"{log['best_epoch']} (val AUROC {log['best_val_auroc']:.3f}), {log['samples_per_s']:.0f} samples/s")
    res = jsonable(evaluate_run(run, cohort, ablations=True, cache_dir=out / "cache", progress=False))
    (out / "evaluation.json").write_text(json.dumps(res, indent=2))

    def fmt(v: float | None) -> str:
        return "  -  " if v is None else f"{v:.3f}"

    print(f"\n{'test split':<22} {'n':>4} {'AUROC':>6} {'AUPRC':>6} {'ECE':>6}  gate ct / notes")
    o = res["overall"]
    print(f"{'both modalities':<22} {o['n']:>4} {fmt(o['auroc']):>6} {fmt(o['auprc']):>6} {fmt(o['ece']):>6}  "
          f"{res['gate_mean']['ct']:.2f} / {res['gate_mean']['notes']:.2f}")
    for name, a in res["ablations"].items():
        kept = "ct" if name == "without_notes" else "notes"
        label = name.replace("_", " ")
        print(f"{label:<22} {a['n']:>4} {fmt(a['auroc']):>6} {fmt(a['auprc']):>6} {fmt(a['ece']):>6}  "
              f"{kept} gate {a[f'gate_{kept}_mean']:.2f}")
    print(f"\nrun: {run} (model/, calibration.json, train_log.json, training_curve.png); evaluation: {out / 'evaluation.json'}")
    print("The small demo cohort trains on ~90 cases: expect modest, noisy AUROC; `workbench bench model` (full "
          "preset) is the real measure (bench/results/model.json, data_cards/model_card.md).")
