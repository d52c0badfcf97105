"""Similar cases: a node-local FAISS index of the fused embeddings of one site's training cases.

What a clinician asks after a risk: "which of our own cases looked like this, and what were they?" The index
holds, for one site only, each training case's fused representation (the vector the risk head reads),
L2-normalised so that inner product is cosine similarity (``faiss.IndexFlatIP``: exact search; a site has
thousands of cases, not millions). Next to it, ``cases.json`` keeps each case's id, label and the
de-identified note the model read. No index ever holds two sites' cases, and a query names its site: in a
federation this folder lives at the node and never travels (docs/architecture.md §8).

The same index gives the out-of-distribution score: the cosine distance to the k-th nearest training case
(Sun et al. 2022, "Out-of-distribution detection with deep nearest neighbors"). A case farther from its
site's training cases than nearly all of that site's calib cases is one the model has not seen the like of.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.atomic import atomic_write, write_text
from workbench.errors import WorkbenchError

INDEX_FILE = "index.faiss"
CASES_FILE = "cases.json"


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim != 2:
        raise WorkbenchError(f"embeddings of shape {x.shape}: expected (cases, width)")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class SiteIndex:
    """One site's training cases, searchable by fused embedding."""

    site: str
    case_ids: list[str]
    labels: list[int]
    notes: list[str]  # de-identified, as the model read them ("" for a case without a note)
    index: Any  # faiss.IndexFlatIP over the normalised embeddings

    @classmethod
    def build(cls, site: str, embeddings: np.ndarray, case_ids: list[str], labels: list[int],
              notes: list[str]) -> SiteIndex:
        import faiss

        if not (len(embeddings) == len(case_ids) == len(labels) == len(notes)):
            raise WorkbenchError(f"{site}: {len(embeddings)} embeddings for {len(case_ids)} cases")
        if len(case_ids) == 0:
            raise WorkbenchError(f"{site}: no training case to index")
        x = _normalised(embeddings)
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        return cls(site, list(case_ids), [int(v) for v in labels], list(notes), index)

    def __len__(self) -> int:
        return len(self.case_ids)

    def search(self, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, row indices), each (N, min(k, len)), best first."""
        return self.index.search(_normalised(embeddings), min(k, len(self)))

    def knn_distance(self, embeddings: np.ndarray, k: int) -> np.ndarray:
        """Cosine distance to the k-th nearest training case, per query row (the OOD score)."""
        sims, _ = self.search(embeddings, k)
        return 1.0 - sims[:, -1].astype(float)

    def similar(self, embedding: np.ndarray, k: int = 5, exclude: str | None = None) -> list[dict[str, Any]]:
        """The k most similar training cases of this site: id, label, cosine similarity, de-identified note."""
        sims, rows = self.search(np.asarray(embedding)[None], k + (exclude is not None))
        out = []
        for s, r in zip(sims[0], rows[0], strict=True):
            if r < 0 or self.case_ids[r] == exclude:
                continue
            out.append({"case_id": self.case_ids[r], "site": self.site, "label": self.labels[r],
                        "similarity": round(float(s), 4), "note": self.notes[r]})
        return out[:k]

    def save(self, folder: str | Path) -> Path:
        """``folder/index.faiss`` and ``folder/cases.json``, each written to a temporary file and renamed."""
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / INDEX_FILE) as tmp:
            faiss.write_index(self.index, str(tmp))
        meta = {"site": self.site, "case_ids": self.case_ids, "labels": self.labels, "notes": self.notes,
                "metric": "cosine (inner product of L2-normalised fused embeddings)"}
        write_text(folder / CASES_FILE, json.dumps(meta) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> SiteIndex:
        import faiss

        folder = Path(folder)
        if not (folder / INDEX_FILE).is_file() or not (folder / CASES_FILE).is_file():
            raise WorkbenchError(f"{folder}: no similar-case index here ({INDEX_FILE} and {CASES_FILE} expected)")
        meta = json.loads((folder / CASES_FILE).read_text(encoding="utf-8"))
        index = faiss.read_index(str(folder / INDEX_FILE))
        if index.ntotal != len(meta["case_ids"]):
            raise WorkbenchError(f"{folder}: index holds {index.ntotal} vectors for {len(meta['case_ids'])} cases")
        return cls(meta["site"], meta["case_ids"], meta["labels"], meta["notes"], index)


__all__ = ["SiteIndex"]
