"""The README's tables from the benchmark JSONs: every figure as its mean and 95% interval, never retyped.

``python -m workbench.bench.tables bench/results/model.json [bench/results/model_shifted.json]`` prints the
markdown that "The model" shows; the numbers come straight from the JSON (``<key>`` the mean over seeds,
``<key>_ci95`` its interval), so a table can be checked against the file it cites.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

MODEL_COLUMNS = (("fused", "fused"), ("ct_only", "CT only"), ("notes_only", "notes only"),
                 ("late_fusion", "late fusion"), ("brock_oracle", "Brock, true variables"),
                 ("bayes", "Bayes (true risk)"), ("ct_only_ceiling", "CT ceiling"),
                 ("notes_only_ceiling", "notes ceiling"))


def cell(mean: float | None, ci: Any = None, digits: int = 3) -> str:
    """``0.859 [0.84, 0.88]``; a reference with no interval is the number alone; a missing figure is a dash."""
    if mean is None:
        return "-"
    text = f"{mean:.{digits}f}"
    if ci and all(v is not None for v in ci):
        text += f" [{ci[0]:.{digits - 1}f}, {ci[1]:.{digits - 1}f}]"
    return text


def paired_cell(d: dict[str, Any] | None, digits: int = 3) -> str:
    if not d:
        return "-"
    return cell(d["value"], d.get("ci95"), digits)


def model_rows(result: dict[str, Any]) -> list[str]:
    """One row of the model table: AUROC of each variant and reference, mean [95% interval]."""
    au, ci = result["auroc"], result.get("auroc_ci95") or {}
    label = f"{result.get('truth', 'brock')} ({result.get('n_seeds', 1)} seeds, {result.get('n_eval', '?')} cases)"
    return [f"| {label} | " + " | ".join(cell(au.get(k), ci.get(k)) for k, _ in MODEL_COLUMNS) + " |"]


def model_table(results: list[dict[str, Any]]) -> str:
    head = "| AUROC, evaluation cohort | " + " | ".join(name for _, name in MODEL_COLUMNS) + " |"
    lines = [head, "| --- " * (len(MODEL_COLUMNS) + 1) + "|"]
    for r in results:
        lines += model_rows(r)
    lines += ["", "| truth | fusion gain over CT (paired) | fused / Bayes | fused - Bayes | ECE (floor: true risk) "
              "| marked centre | without notes | without CT |", "| --- " * 8 + "|"]
    for r in results:
        au = r["auroc"]
        lines.append(
            f"| {r.get('truth', 'brock')} | {paired_cell(r.get('fusion_gain'))} "
            f"| {au['fused'] / au['bayes']:.3f} | {au['fused'] - au['bayes']:+.3f} "
            f"| {cell(r.get('ece'), r.get('ece_ci95'))} ({cell(r.get('ece_true_risk'), r.get('ece_true_risk_ci95'))}) "
            f"| {cell(r.get('auroc_marked_centre'), r.get('auroc_marked_centre_ci95'))} "
            f"| {cell(r.get('auroc_without_notes'), r.get('auroc_without_notes_ci95'))} "
            f"| {cell(r.get('auroc_without_ct'), r.get('auroc_without_ct_ci95'))} |")
    lines += ["", "| truth | " + " | ".join(f"AUROC {s}" for s in sorted(results[0]["per_site_auroc"]))
              + " | female | male |", "| --- " * (len(results[0]["per_site_auroc"]) + 3) + "|"]
    for r in results:
        ps, pci = r["per_site_auroc"], r.get("per_site_auroc_ci95") or {}
        sx, sci = r.get("per_sex_auroc") or {}, r.get("per_sex_auroc_ci95") or {}
        lines.append(f"| {r.get('truth', 'brock')} | " + " | ".join(cell(ps[s], pci.get(s)) for s in sorted(ps))
                     + f" | {cell(sx.get('female'), sci.get('female'))} | {cell(sx.get('male'), sci.get('male'))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python -m workbench.bench.tables bench/results/model.json [model_shifted.json ...]",
              file=sys.stderr)
        return 2
    print(model_table([json.loads(p.read_text()) for p in paths]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
