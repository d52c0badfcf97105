"""``make demo``: the main job on the embedded synthetic cohort, end to end as far as it is built."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.cohort.config import CohortConfig
from workbench.cohort.generate import generate_cohort
from workbench.data.ingest import ingest_site


def run_demo(out: Path, *, preset: str = "small") -> int:
    cohort = out / "cohort"
    print(f"[1/2] synthetic cohort ({preset}) -> {cohort}")
    s = generate_cohort(cohort, CohortConfig(preset=preset))
    print(f"      {s.n_cases} cases at {len(s.sites)} sites, {s.bytes_on_disk / 2**20:.0f} MB, {s.seconds:.0f} s")
    print("[2/2] ingestion of each site (check, preprocess, cache)")
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
    return 0
