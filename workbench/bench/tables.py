"""The README's tables from the benchmark JSONs: every figure as its mean and 95% interval, never retyped.

``python -m workbench.bench.tables bench/results/model.json [bench/results/model_shifted.json]`` prints the
markdown that "The model" shows (``federated.json federated_shifted.json``: the federation's; ``explain.json``:
calibration per site); the numbers come straight from the JSON (``<key>`` the mean over seeds,
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


def federated_table(results: list[dict[str, Any]]) -> str:
    """``bench federated``: AUROC of each way of training, then the paired differences the README claims."""
    cols = "| AUROC, evaluation cohort | pooled (centralized) | FedAvg | DP eps 1 | DP eps 3 | DP eps 8 " \
           "| pooled, head only, no DP | fusion-only round |"
    lines = [cols, "| --- " * 8 + "|"]
    for r in results:
        au, ci = r["auroc"], r.get("auroc_ci95") or {}
        dp, dci = r["dp_curve"], r.get("dp_curve_ci95") or {}
        label = f"{r.get('truth', 'brock')} ({r.get('n_seeds', 1)} seeds, {r.get('n_eval', '?')} cases)"
        lines.append(f"| {label} | {cell(au['centralized'], ci.get('centralized'))} | {cell(au['fedavg'], ci.get('fedavg'))}"
                     + "".join(f" | {cell(dp[e], dci.get(e))}" for e in ("1", "3", "8"))
                     + f" | {cell(r.get('auroc_centralized_dp_subset_no_dp'), r.get('auroc_centralized_dp_subset_no_dp_ci95'))}"
                     + f" | {cell(r.get('auroc_fusion_only_round'), r.get('auroc_fusion_only_round_ci95'))} |")
    lines += ["", "| truth | FedAvg - pooled (paired) | DP eps 1 - FedAvg | DP eps 3 - FedAvg | DP eps 8 - FedAvg "
              "| largest epsilon spent, target 1 / 3 / 8 |", "| --- " * 6 + "|"]
    for r in results:
        d = r["dp_minus_fedavg"]
        spent = r.get("epsilon_max_over_repeats") or {}
        lines.append(f"| {r.get('truth', 'brock')} | {paired_cell(r['fedavg_minus_pooled'])} | "
                     + " | ".join(paired_cell(d.get(e)) for e in ("1", "3", "8"))
                     + " | " + " / ".join(f"{spent[e]:.3f}" for e in ("1", "3", "8") if e in spent) + " |")
    sites = sorted(results[0]["per_site_auroc"])
    lines += ["", "| truth, FedAvg | " + " | ".join(f"AUROC {s}" for s in sites) + " |", "| --- " * (len(sites) + 1) + "|"]
    for r in results:
        ps, pci = r["per_site_auroc"], r.get("per_site_auroc_ci95") or {}
        lines.append(f"| {r.get('truth', 'brock')} | " + " | ".join(cell(ps[s], pci.get(s)) for s in sites) + " |")
    return "\n".join(lines)


def calibration_table(result: dict[str, Any]) -> str:
    """``bench explain``: per site, the stated risk's ECE, the true risk's on the same cases, and the paired excess."""
    e, eci = result["ece_per_site"], result.get("ece_per_site_ci95") or {}
    t, tci = result["ece_true_risk_per_site"], result.get("ece_true_risk_per_site_ci95") or {}
    x, xci = result["ece_excess_per_site"], result.get("ece_excess_per_site_ci95") or {}
    target = result.get("ece_excess_target", 0.03)
    lines = [f"| site ({result.get('n_seeds', 1)} seeds) | cases | ECE, stated risk | ECE, true risk (floor) "
             f"| excess (paired) | within {target:g} |", "| --- " * 6 + "|"]
    for s in sorted(e):
        lines.append(f"| {s} | {result['n_test_per_site'][s]} | {cell(e[s], eci.get(s))} | {cell(t[s], tci.get(s))} "
                     f"| {cell(x[s], xci.get(s))} | {'yes' if x[s] <= target else '**no**'} |")
    return "\n".join(lines)


def table_for(result: dict[str, Any]) -> str:
    if "dp_curve" in result:
        return federated_table([result])
    if "ece_excess_per_site" in result:
        return calibration_table(result)
    return model_table([result])


def render(results: list[dict[str, Any]]) -> str:
    """The table for these JSONs: the federation's, per-site calibration (one explain JSON) or the model's."""
    if all("dp_curve" in r for r in results):
        return federated_table(results)
    if len(results) == 1:
        return table_for(results[0])
    return model_table(results)


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python -m workbench.bench.tables bench/results/model.json [model_shifted.json ...]",
              file=sys.stderr)
        return 2
    print(render([json.loads(p.read_text()) for p in paths]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
