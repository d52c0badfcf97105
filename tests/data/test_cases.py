"""``load_cases``: the contract of a site folder, and no truth in a Case."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from workbench.data import Case, find_case, load_cases
from workbench.errors import CaseError


def test_cases_hold_inputs_only(tiny_cohort: Path) -> None:
    site = sorted(p for p in tiny_cohort.iterdir() if (p / "manifest.csv").exists())[0]
    cases = load_cases(site)
    assert len(cases) == 8
    fields = {f.name for f in dataclasses.fields(Case)}
    assert fields == {"case_id", "site", "split", "series_dir", "nodule_lps_mm", "note", "label", "note_id"}
    for c in cases:
        assert c.site == site.name
        assert c.has_ct == (c.series_dir is not None)
        if c.has_ct:
            assert c.series_dir.is_dir() and len(c.nodule_lps_mm) == 3
    assert find_case(cases, cases[3].case_id, site) is cases[3]
    with pytest.raises(CaseError, match="unknown case 'nope'"):
        find_case(cases, "nope", site)


def test_bad_manifests_are_refused_with_the_reason(tiny_site_copy: Path) -> None:
    manifest = tiny_site_copy / "manifest.csv"
    text = manifest.read_text()
    manifest.write_text(text.replace("nodule_x_mm", "x"))
    with pytest.raises(CaseError, match="missing column.*nodule_x_mm"):
        load_cases(tiny_site_copy)
    lines = text.splitlines()
    lines.append(lines[1])  # duplicate case id
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(CaseError, match="appears twice"):
        load_cases(tiny_site_copy)
    (tiny_site_copy / "notes.jsonl").write_text('{"note_id": "x", "text": "ok"}\nnot json\n')
    manifest.write_text(text)
    with pytest.raises(CaseError, match=r"notes.jsonl:2"):
        load_cases(tiny_site_copy)
    with pytest.raises(CaseError, match="no manifest.csv"):
        load_cases(tiny_site_copy / "dicom")
