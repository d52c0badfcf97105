"""The CT reader: a CT encoder pretrained to state what a radiologist annotates, on a separate phantom corpus.

Why: from a few hundred malignancy labels per site a 3-D network learns size and margin slowly and noisily, and
under DP at epsilon 1-8 not at all (full preset: DP-SGD from scratch stayed at AUROC 0.55-0.58; one seed on the
earlier protocol's test split, which guided this choice then and is not evidence: the figures of record are the
JSONs in bench/results/ made under the protocol). Annotated public collections (LIDC-IDRI-like: diameter, texture,
spiculation per nodule) are what groups use to pretrain nodule encoders; the phantom corpus
``workbench.cohort.ct_corpus`` writes stands in for one (a seed no cohort uses, no malignancy label), read here as
data (``workbench.data.corpus.CTCorpus``). The reader is then loaded with
``CTEncoderConfig(path=DIR, freeze=True)``: its convolution stacks stay fixed and only the projections, fusion and
heads train, which is also the trainable subset that DP-SGD at a hospital can afford (docs/architecture.md §7).

With ``CTReaderConfig.annotation_noise`` the reader learns from one simulated radiologist's annotations (the
corpus' noisy manifest: inter-reader disagreement on diameter, type and spiculation, ``data_cards/ct_corpus.md``)
instead of the generator's truth; its held-out figures are still measured against the clean truth, and the report
adds the annotations' own figures on the same cases (``annotator``), so one sees whether the reader learned the
finding or the annotator's errors. ``ct_reader.json`` and the card say which annotations it was trained on.

The heads read the encoder's finding vector (an MLP over pooled cells and position, which becomes the finding
token) linearly, so every annotated fact is readable from one token the fusion's [CT] summary attends to.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from workbench.atomic import atomic_write
from workbench.data.corpus import CTCorpus, load_ct_corpus
from workbench.models.ct_encoder import CT_READER_WEIGHTS, CTEncoder, CTEncoderConfig
from workbench.train.trainer import flip_patches


@dataclass
class CTReaderConfig:
    n_cases: int = 1500  # corpus size (the phantom corpus, a seed no cohort uses)
    epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-3
    d_model: int = 64  # token width (the fusion's d_model: the projections are kept when it matches)
    val_share: float = 0.1  # corpus cases held out to report how well each fact is read (0: report on train)
    seed: int = 0
    progress: bool = True
    # learn from the corpus' noisy annotations (reader disagreement) instead of the clean truth; held-out figures
    # are measured against the clean truth either way
    annotation_noise: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


LOG_DIAMETER_CENTRE, LOG_DIAMETER_SPREAD = 2.0, 0.5  # log mm: about unit spread


def standard_log_diameter(log_mm: torch.Tensor) -> torch.Tensor:
    """The diameter regression target: log mm centred and scaled to about unit spread."""
    return (log_mm - LOG_DIAMETER_CENTRE) / LOG_DIAMETER_SPREAD


def _losses(heads: nn.ModuleDict, pooled: torch.Tensor, y: dict[str, torch.Tensor],
            classes: dict[str, tuple[str, ...]]) -> dict[str, torch.Tensor]:
    out = {}
    for k, head in heads.items():
        z = head(pooled)
        if k in classes:
            out[k] = F.cross_entropy(z, y[k].long())
        elif k == "log_diameter":
            out[k] = F.mse_loss(z.squeeze(-1), standard_log_diameter(y[k]))
        else:
            out[k] = F.binary_cross_entropy_with_logits(z.squeeze(-1), y[k])
    return out


def _figures(pred: dict[str, torch.Tensor], truth: dict[str, torch.Tensor]) -> dict[str, float]:
    """How well ``pred`` (log mm; class index; 0/1 per fact) states ``truth``: diameter R^2 and mean absolute
    error in mm, accuracy of the rest."""
    out: dict[str, float] = {}
    for k, y in truth.items():
        if k == "log_diameter":
            out["diameter_r2"] = float(1 - ((pred[k] - y) ** 2).mean() / y.var())
            out["diameter_mae_mm"] = float((pred[k].exp() - y.exp()).abs().mean())
        else:
            out[f"{k}_accuracy"] = float((pred[k].round() == y.round()).float().mean())
    return out


def pretrain_ct_reader(corpus: CTCorpus, config: CTReaderConfig | None = None,
                       encoder_config: CTEncoderConfig | None = None) -> tuple[CTEncoder, dict[str, Any]]:
    """Train a fresh ``CTEncoder`` on ``corpus``; returns it and what it reached on held-out corpus cases against
    the clean truth (per fact: loss; diameter: R^2 and mean absolute error in mm; classes and binaries:
    accuracy). Trained on the noisy annotations when ``config.annotation_noise`` (the report's ``annotations``
    says which, and ``annotator`` gives the noisy annotations' own figures on the held-out cases)."""
    config = config or CTReaderConfig()
    classes = corpus.classes
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    enc = CTEncoder(encoder_config or CTEncoderConfig(), config.d_model)
    heads = nn.ModuleDict({k: nn.Linear(enc.config.finding_size, len(classes[k]) if k in classes else 1)
                           for k in corpus.facts})
    n = len(corpus)
    order = torch.randperm(n, generator=g)
    n_val = max(1, int(n * config.val_share)) if config.val_share > 0 else n
    val_idx, train_idx = (order[:n_val], order[n_val:]) if config.val_share > 0 else (order, order)
    targets = {k: torch.as_tensor(v) for k, v in corpus.training_facts(config.annotation_noise).items()}
    clean = {k: torch.as_tensor(v) for k, v in corpus.facts.items()}  # the truth held-out figures are measured on
    params = [*enc.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    steps = config.epochs * max(1, (len(train_idx) + config.batch_size - 1) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.1)

    def pooled(idx: torch.Tensor, augment: bool) -> torch.Tensor:
        patch = corpus.ct_patch[idx].float()
        if augment:
            patch = flip_patches(patch, g)
        p, c = enc.features(patch, corpus.ct_context[idx].float())
        return enc.finding_vector(p, c, corpus.ct_position[idx])  # (B, finding_size)

    bar = tqdm(range(config.epochs), desc="pretrain CT reader", unit="epoch", disable=not config.progress)
    for _ in bar:
        enc.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=g)]
        total = 0.0
        for s in range(0, len(perm), config.batch_size):
            b = perm[s:s + config.batch_size]
            terms = _losses(heads, pooled(b, True), {k: v[b] for k, v in targets.items()}, classes)
            loss = sum(terms.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            opt.step()
            sched.step()
            total += float(loss) * len(b)
        bar.set_postfix(loss=round(total / len(perm), 4))
    enc.eval()
    with torch.no_grad():
        z = torch.cat([pooled(val_idx[s:s + 64], False) for s in range(0, n_val, 64)])
        yv = {k: v[val_idx] for k, v in clean.items()}
        report: dict[str, Any] = {"n_train": len(train_idx), "n_val": n_val,
                                  "annotations": "noisy" if config.annotation_noise else "clean",
                                  "val_loss": {k: float(v) for k, v in _losses(heads, z, yv, classes).items()}}
        pred: dict[str, torch.Tensor] = {}
        for k, head in heads.items():
            out = head(z)
            if k == "log_diameter":
                pred[k] = out.squeeze(-1) * LOG_DIAMETER_SPREAD + LOG_DIAMETER_CENTRE
            elif k in classes:
                pred[k] = out.argmax(-1).float()
            else:
                pred[k] = (out.squeeze(-1) > 0).float()
        report.update(_figures(pred, yv))
        if config.annotation_noise:  # the annotations the reader learned from, against the same clean truth
            report["annotator"] = _figures({k: v[val_idx] for k, v in targets.items()}, yv)
    return enc, report


def save_ct_reader(enc: CTEncoder, out_dir: str | Path, config: CTReaderConfig, corpus_seed: int,
                   report: dict[str, Any], annotation_noise: dict[str, Any] | None = None) -> Path:
    """A CT reader directory: ``ct_reader.safetensors``, ``ct_reader.json`` (configs, report, which annotations it
    learned from and, for noisy ones, their error model ``annotation_noise``), a card. Atomic."""
    from safetensors.torch import save_file

    with atomic_write(out_dir) as tmp:
        tmp.mkdir(parents=True)
        save_file({k: v.detach().contiguous() for k, v in enc.state_dict().items()}, str(tmp / CT_READER_WEIGHTS))
        enc_cfg = {k: v for k, v in asdict(enc.config).items() if k not in ("path", "freeze")}
        meta = {"encoder": enc_cfg, "pretraining": config.to_dict(), "corpus_seed": corpus_seed,
                "annotations": "noisy" if config.annotation_noise else "clean", "report": report}
        if config.annotation_noise:
            meta["annotation_noise"] = annotation_noise or {}
        (tmp / "ct_reader.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(ct_reader_card(config, corpus_seed, report), encoding="utf-8")
    return Path(out_dir)


def ct_reader_card(config: CTReaderConfig, corpus_seed: int, report: dict[str, Any]) -> str:
    acc = ", ".join(f"{k.removesuffix('_accuracy')} {v:.2f}" for k, v in report.items() if k.endswith("_accuracy"))
    learned = ("**Trained on noisy annotations**: one simulated radiologist's diameter, type and spiculation, with "
               "published-like inter-reader disagreement (`workbench.cohort.annotation_noise`); the held-out figures "
               "below are against the clean truth." if config.annotation_noise else
               "Trained on the generator's noise-free annotations (no reader disagreement).")
    return (
        "# CT reader (pretrained CT encoder)\n\n"
        "A MONAI 3-D encoder (nodule patch + coarse chest view + position) taught to state what a radiologist "
        "annotates on a chest CT: nodule diameter, type (solid / part-solid / non-solid), spiculation, emphysema and "
        f"upper-lobe location. Trained on {config.n_cases} synthetic phantoms from the workbench's renderer with seed "
        f"{corpus_seed}, which no cohort uses; never on a cohort's scans and never on malignancy labels. It stands "
        "in for an encoder pretrained on an annotated public collection (LIDC-IDRI-like). Load it with "
        "`CTEncoderConfig(path=THIS_DIR, freeze=True)`.\n\n"
        f"{learned}\n\n"
        f"Held-out corpus cases ({report['n_val']}): diameter R^2 {report['diameter_r2']:.3f}; accuracy {acc}.\n"
    )


def build_ct_reader(out_dir: str | Path, corpus: str | Path | Callable[[], Path], config: CTReaderConfig | None = None
                    ) -> Path:
    """A CT corpus -> a pretrained reader in ``out_dir``; reused when present.

    ``corpus``: the manifest ``workbench.cohort.ct_corpus.write_ct_corpus`` returns, or a function that writes
    the corpus and returns it (the caller's way of generating it only when the reader has to be trained)."""
    out = Path(out_dir)
    if (out / CT_READER_WEIGHTS).is_file():
        return out
    config = config or CTReaderConfig()
    data = load_ct_corpus(corpus() if callable(corpus) else corpus)
    enc, report = pretrain_ct_reader(data, config)
    return save_ct_reader(enc, out, config, data.seed, report, data.annotation_noise)


__all__ = ["CTReaderConfig", "build_ct_reader", "pretrain_ct_reader", "save_ct_reader"]
