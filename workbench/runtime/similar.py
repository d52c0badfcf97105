"""Similar cases: a node-local FAISS index of one site's training cases, by the nodule and by the patient.

What a clinician asks after a risk: "which of our own cases looked like this, and what were they?" A case is
indexed as two L2-normalised parts side by side, each scaled by the square root of its weight
(``SimilarityConfig``), so that the inner product ``faiss.IndexFlatIP`` computes is a weighted sum of two cosines:

    similarity = w * cos(nodule) + (1 - w) * cos(fused)

- ``nodule``: the CT reader's finding vector (``CTEncoder.finding_vector``, read off the forward pass by
  ``runtime.inference.capture_nodule``): what the frozen reader was pretrained to state diameter, type,
  spiculation, emphysema and upper lobe from. Each dimension standardised by the site's training cases before
  normalising (the raw vectors share a large common direction, which made every nodule cosine near 1).
- ``fused``: the fused CT + note representation the risk head reads (the patient as the model sees them).

The fused part alone (the index before issue 17) matched a 21 mm solid malignant nodule with a 7.9 mm part-solid
and a 4.6 mm solid one: the fused vector follows the note's smoking history more than the nodule. ``w`` was
chosen on the full preset's val split (``SimilarityConfig``; the figures there). A case without a CT has a zero
nodule part: as a query its similarity to every case is the fused cosine alone, and as an indexed case it
shares only the fused part, (1 - w) * cos(fused), with a query that has a CT.

Exact search (a site has thousands of cases, not millions). Next to the index, ``cases.json`` keeps each case's
id, label, the de-identified note the model read and the similarity's settings. No index ever holds two sites'
cases, and a query names its site: in a federation this folder lives at the node and never travels
(docs/architecture.md §8).

The same index gives the out-of-distribution score: the distance 1 - similarity to the k-th nearest training case
(Sun et al. 2022, "Out-of-distribution detection with deep nearest neighbors"), on the same weighted vectors as
the similar cases; the threshold is fitted on the site's calib cases with the same index (``run_uncertainty``), so
calibration and queries see the same vectors. An index saved before the nodule part (no ``similarity`` entry in
``cases.json``) loads as the fused part alone, with the OOD threshold it was calibrated with; ``legacy`` says so,
and re-running ``workbench calibrate`` makes the weighted one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.atomic import atomic_write, write_text
from workbench.errors import WorkbenchError

INDEX_FILE = "index.faiss"
CASES_FILE = "cases.json"
FORMAT = 2  # cases.json format: 2 = fused + nodule parts (SimilarityConfig); absent = fused only (legacy)


@dataclass(frozen=True)
class SimilarityConfig:
    """How much of a similar case's similarity is the nodule's: ``nodule_weight`` of the cosine comes from the CT
    reader's nodule vector, the rest from the fused embedding. Chosen on the full preset's val split (5 nearest
    train cases of the val case's own site, seed-0 federated run; truth.jsonl): ``VAL_FIGURES``. At 0 the index
    is the fused embedding alone (as before issue 17)."""

    nodule_weight: float = 0.7
    # standardise each dimension of the nodule vector by the site's training cases (mean and standard deviation)
    # before normalising: the raw vectors share a large common direction that made every nodule cosine near 1
    standardise_nodule: bool = True


# What chose ``nodule_weight``: the full preset's val cases with a CT (174, all four sites; seed-0 federated run,
# cohort full-seed0), each against the 5 nearest train cases of its own site, scored against the generator's truth
# (truth.jsonl). Rule: the largest weight (steps of 0.1) whose label agreement stays within 1 point of the fused
# part alone, so the matches follow the nodule without losing what the risk head reads. Per weight: mean |log
# diameter ratio| (lower: closer sizes), type, lobe and label agreement, share of matches with the same smoking
# status (what the fused part alone followed). Random train cases of the site: 0.661, 0.645, -, 0.623, -.
VAL_FIGURES: dict[float, dict[str, float]] = {
    0.0: {"log_diameter_ratio": 0.287, "type": 0.779, "lobe": 0.334, "label": 0.780, "smoking": 0.686},
    0.3: {"log_diameter_ratio": 0.248, "type": 0.806, "lobe": 0.369, "label": 0.778, "smoking": 0.571},
    0.5: {"log_diameter_ratio": 0.241, "type": 0.824, "lobe": 0.383, "label": 0.776, "smoking": 0.521},
    0.7: {"log_diameter_ratio": 0.228, "type": 0.832, "lobe": 0.394, "label": 0.770, "smoking": 0.479},
    0.8: {"log_diameter_ratio": 0.214, "type": 0.837, "lobe": 0.418, "label": 0.755, "smoking": 0.467},
    1.0: {"log_diameter_ratio": 0.201, "type": 0.838, "lobe": 0.437, "label": 0.698, "smoking": 0.391},
}


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim != 2:
        raise WorkbenchError(f"embeddings of shape {x.shape}: expected (cases, width)")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class SiteIndex:
    """One site's training cases, searchable by the weighted nodule + fused cosine."""

    site: str
    case_ids: list[str]
    labels: list[int]
    notes: list[str]  # de-identified, as the model read them ("" for a case without a note)
    index: Any  # faiss.IndexFlatIP over ``vectors`` of the training cases
    config: SimilarityConfig = field(default_factory=SimilarityConfig)
    fused_width: int = 0
    nodule_mean: np.ndarray | None = None  # (nodule width,): the training cases' mean (None: no nodule part)
    nodule_scale: np.ndarray | None = None  # (nodule width,): their standard deviation per dimension
    legacy: bool = False  # loaded from an index saved before the nodule part: fused only

    @property
    def nodule_width(self) -> int:
        return 0 if self.nodule_mean is None else len(self.nodule_mean)

    @property
    def nodule_weight(self) -> float:
        """The weight the nodule part actually has (0 without one)."""
        return self.config.nodule_weight if self.nodule_width else 0.0

    def vectors(self, fused: np.ndarray, nodule: np.ndarray | None = None, *, query: bool = True) -> np.ndarray:
        """The rows as this index compares them: [sqrt(w) * nodule_hat, sqrt(1 - w) * fused_hat]. A row without a
        nodule vector (all zero: no CT) keeps a zero nodule part; as a ``query`` its fused part is scaled by
        1 / sqrt(1 - w), so that its similarity to every case is the fused cosine alone."""
        f = _normalised(fused)
        if f.shape[1] != self.fused_width:
            raise WorkbenchError(f"{self.site}: fused embeddings of width {f.shape[1]} for an index of width "
                                 f"{self.fused_width} (another model? re-run `workbench calibrate RUN COHORT`)")
        if not self.nodule_width:
            return f
        if nodule is None:
            raise WorkbenchError(f"{self.site}: this similar-case index also compares the nodule (the CT reader's "
                                 "finding vector): pass the query's nodule vectors (predict_logits' 'nodule')")
        n = np.asarray(nodule, dtype=np.float32)
        if n.shape != (len(f), self.nodule_width):
            raise WorkbenchError(f"{self.site}: nodule vectors of shape {n.shape}, expected ({len(f)}, "
                                 f"{self.nodule_width}) (re-run `workbench calibrate RUN COHORT`)")
        has_ct = np.abs(n).sum(1) > 0
        assert self.nodule_mean is not None
        scale = self.nodule_scale if self.nodule_scale is not None else np.ones_like(self.nodule_mean)
        n = np.where(has_ct[:, None], (n - self.nodule_mean[None]) / scale[None], 0.0)
        w = self.nodule_weight
        n_part = np.sqrt(w) * _normalised(n) * has_ct[:, None]
        # a query without a CT: 1 / sqrt(1 - w) against the indexed sqrt(1 - w), so its similarity is the fused cosine
        alone = 1.0 / np.sqrt(1.0 - w) if w < 1 else 0.0
        f_scale = np.where(has_ct | (not query), np.sqrt(1.0 - w), alone)[:, None]
        return np.ascontiguousarray(np.concatenate([n_part, f_scale * f], axis=1), dtype=np.float32)

    @classmethod
    def build(cls, site: str, embeddings: np.ndarray, case_ids: list[str], labels: list[int],
              notes: list[str], nodule: np.ndarray | None = None,
              config: SimilarityConfig | None = None) -> SiteIndex:
        """``embeddings``: the fused embeddings; ``nodule``: the CT reader's nodule vectors, zero rows for cases
        without a CT (None, or width 0: a model without a CT reader; then the fused part alone)."""
        import faiss

        if not (len(embeddings) == len(case_ids) == len(labels) == len(notes)):
            raise WorkbenchError(f"{site}: {len(embeddings)} embeddings for {len(case_ids)} cases")
        if len(case_ids) == 0:
            raise WorkbenchError(f"{site}: no training case to index")
        fused = np.asarray(embeddings, dtype=np.float32)
        mean = scale = None
        if nodule is not None and np.asarray(nodule).ndim == 2 and np.asarray(nodule).shape[1] > 0:
            n = np.asarray(nodule, dtype=np.float32)
            if len(n) != len(case_ids):
                raise WorkbenchError(f"{site}: {len(n)} nodule vectors for {len(case_ids)} cases")
            has_ct = np.abs(n).sum(1) > 0
            config = config or SimilarityConfig()
            mean, scale = np.zeros(n.shape[1], np.float32), np.ones(n.shape[1], np.float32)
            if config.standardise_nodule and has_ct.any():
                mean, scale = n[has_ct].mean(0), np.maximum(n[has_ct].std(0), 1e-6).astype(np.float32)
        out = cls(site, list(case_ids), [int(v) for v in labels], list(notes), None, config or SimilarityConfig(),
                  fused.shape[1] if fused.ndim == 2 else 0, mean, scale)
        x = out.vectors(fused, nodule, query=False)
        out.index = faiss.IndexFlatIP(x.shape[1])
        out.index.add(x)
        return out

    def __len__(self) -> int:
        return len(self.case_ids)

    def search(self, embeddings: np.ndarray, k: int, nodule: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, row indices), each (N, min(k, len)), best first."""
        return self.index.search(self.vectors(embeddings, nodule), min(k, len(self)))

    def knn_distance(self, embeddings: np.ndarray, k: int, nodule: np.ndarray | None = None) -> np.ndarray:
        """1 - similarity to the k-th nearest training case, per query row (the OOD score)."""
        sims, _ = self.search(embeddings, k, nodule)
        return 1.0 - sims[:, -1].astype(float)

    def similar(self, embedding: np.ndarray, k: int = 5, exclude: str | None = None,
                nodule: np.ndarray | None = None) -> list[dict[str, Any]]:
        """The k most similar training cases of this site: id, label, similarity (with its nodule and fused
        cosines), de-identified note."""
        q_nod = None if nodule is None or not self.nodule_width else np.asarray(nodule)[None]
        sims, rows = self.search(np.asarray(embedding)[None], k + (exclude is not None), q_nod)
        parts = self._parts(np.asarray(embedding)[None], q_nod, rows[0])
        out = []
        for s, r in zip(sims[0], rows[0], strict=True):
            if r < 0 or self.case_ids[r] == exclude:
                continue
            row = {"case_id": self.case_ids[r], "site": self.site, "label": self.labels[r],
                   "similarity": round(float(s), 4), "note": self.notes[r]}
            row.update(parts.get(int(r), {}))
            out.append(row)
        return out[:k]

    def _parts(self, fused: np.ndarray, nodule: np.ndarray | None, rows: np.ndarray) -> dict[int, dict[str, Any]]:
        """Per found row: the nodule and fused cosines the similarity is made of (and the weight)."""
        if not self.nodule_width:
            return {int(r): {"nodule_weight": 0.0} for r in rows if r >= 0}
        q = self.vectors(fused, nodule)[0]
        w, nw = self.nodule_weight, self.nodule_width
        out = {}
        for r in rows:
            if r < 0:
                continue
            x = self.index.reconstruct(int(r))
            qn, xn, qf, xf = q[:nw], x[:nw], q[nw:], x[nw:]
            cos_n = (float(qn @ xn) / w) if w > 0 and np.any(qn) and np.any(xn) else None
            nf = float(np.linalg.norm(qf) * np.linalg.norm(xf))
            out[int(r)] = {"nodule_weight": w, "nodule_cosine": None if cos_n is None else round(cos_n, 4),
                           "fused_cosine": round(float(qf @ xf) / nf, 4) if nf > 0 else None}
        return out

    def save(self, folder: str | Path) -> Path:
        """``folder/index.faiss`` and ``folder/cases.json``, each written to a temporary file and renamed."""
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / INDEX_FILE) as tmp:
            faiss.write_index(self.index, str(tmp))
        meta = {"site": self.site, "case_ids": self.case_ids, "labels": self.labels, "notes": self.notes,
                "format": FORMAT,
                "similarity": {**asdict(self.config), "fused_width": self.fused_width,
                               "nodule_mean": None if self.nodule_mean is None else
                               [float(v) for v in self.nodule_mean],
                               "nodule_scale": None if self.nodule_scale is None else
                               [float(v) for v in self.nodule_scale]},
                "metric": ("w * cos(CT reader's nodule vector, standardised by the training cases) + (1 - w) * "
                           "cos(fused embedding), w = similarity.nodule_weight (0 without a nodule part)")}
        write_text(folder / CASES_FILE, json.dumps(meta) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> SiteIndex:
        import faiss

        folder = Path(folder)
        if not (folder / INDEX_FILE).is_file() or not (folder / CASES_FILE).is_file():
            raise WorkbenchError(f"{folder}: no similar-case index here ({INDEX_FILE} and {CASES_FILE} expected)")
        meta = json.loads((folder / CASES_FILE).read_text(encoding="utf-8"))
        if int(meta.get("format", 1)) > FORMAT:
            raise WorkbenchError(f"{folder}: similar-case index format {meta['format']} is newer than this "
                                 f"workbench reads ({FORMAT}): re-run `workbench calibrate RUN COHORT`")
        index = faiss.read_index(str(folder / INDEX_FILE))
        if index.ntotal != len(meta["case_ids"]):
            raise WorkbenchError(f"{folder}: index holds {index.ntotal} vectors for {len(meta['case_ids'])} cases")
        sim = meta.get("similarity")
        if sim is None:  # saved before the nodule part: the fused embeddings alone, as it was calibrated
            return cls(meta["site"], meta["case_ids"], meta["labels"], meta["notes"], index,
                       SimilarityConfig(nodule_weight=0.0), index.d, None, legacy=True)
        mean, scale = (None if sim.get(k) is None else np.asarray(sim[k], dtype=np.float32)
                       for k in ("nodule_mean", "nodule_scale"))
        config = SimilarityConfig(nodule_weight=float(sim["nodule_weight"]),
                                  standardise_nodule=bool(sim.get("standardise_nodule", True)))
        out = cls(meta["site"], meta["case_ids"], meta["labels"], meta["notes"], index, config,
                  int(sim["fused_width"]), mean, scale)
        if index.d != out.fused_width + out.nodule_width:
            raise WorkbenchError(f"{folder}: index of width {index.d} for fused {out.fused_width} + nodule "
                                 f"{out.nodule_width}: re-run `workbench calibrate RUN COHORT`")
        return out


__all__ = ["SimilarityConfig", "SiteIndex"]
