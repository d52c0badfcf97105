"""The PHI scan is proven before it is trusted: PHI planted in a JSON file (in another format than the truth's), in a
binary file as UTF-16, in a notebook's output, each found with its kind and reported masked; decoys (a name inside
a word, a date inside a UID, an image's base64) are not; an exempt file's finds are counted apart. Then the real
thing, as small as it gets: a one-round DP federation of the tiny cohort, every message captured, scanned: 0 leaks."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from workbench.bench.reliability.phi_scanner import Scanner
from workbench.bench.reliability.phi_search import Matcher
from workbench.bench.reliability.phi_strings import PhiStrings, identity_strings


def _patient():  # noqa: ANN202
    from workbench.cohort.identity import make_identity
    from workbench.cohort.sites import default_sites

    return make_identity(np.random.default_rng(3), default_sites(1)[0], age=66, female=True,
                         visit_date=__import__("datetime").date(2021, 3, 4))


def test_planted_phi_is_found_with_its_kind_and_masked(tmp_path: Path) -> None:
    p = _patient()
    phi = PhiStrings()
    identity_strings(p, phi)
    assert phi.kinds[f"{p.last_name}^{p.first_name}".lower()] == "name"  # the DICOM form of the name
    assert phi.skipped["a bare number under 7 digits"] >= 1  # the bare 5-digit ZIP: skipped, counted
    work = tmp_path / "work"
    art = work / "artifacts"
    art.mkdir(parents=True)
    # 1. a JSON file, the name in "First Last" (the truth has it as Last^First), upper-cased
    (art / "metrics.json").write_text(json.dumps({"auroc": 0.71, "who": f"{p.first_name} {p.last_name}".upper()}))
    # 2. a binary file: float weights with the MRN inside as UTF-16-LE
    blob = np.linspace(-1, 1, 4096, dtype=np.float32).tobytes()
    (art / "weights.bin").write_bytes(blob[:5000] + f" {p.mrn} ".encode("utf-16-le") + blob[5000:])
    # 3. a notebook whose output prints the birth date as "Month D, YYYY"; its image output holds random base64
    month = p.birth_date.strftime("%B")
    nb = {"cells": [{"cell_type": "code", "source": "print(dob)", "outputs": [
        {"output_type": "stream", "name": "stdout", "text": f"born {month} {p.birth_date.day}, {p.birth_date.year}\n"},
        {"output_type": "display_data", "metadata": {}, "data": {
            "image/png": base64.b64encode(np.random.default_rng(0).bytes(30000)).decode()}}]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (art / "review.ipynb").write_text(json.dumps(nb))
    # decoys: the surname inside a longer word, the DICOM birth date inside a UID and a decimal
    da = p.birth_date.strftime("%Y%m%d")
    (art / "decoys.log").write_text(f"x{p.last_name.lower()}ish 1.2.840.{da}.7 0.{da} {p.first_name}s\n")
    # an exempt file: a clinical report naming its patient
    (art / "clinical").mkdir()
    (art / "clinical" / "report.html").write_text(f"<p>Patient: {p.last_name}, {p.first_name}</p>")

    scanner = Scanner(Matcher(phi.kinds), work)
    scanner.scan_tree(art, [("clinical/*", "clinical mode by design")])
    leaks = {(leak["artifact"].split("/")[-1], leak["kind"], leak["encoding"]) for leak in scanner.leaks}
    assert leaks == {("metrics.json", "name", "utf-8"), ("weights.bin", "mrn", "utf-16-le"),
                     ("review.ipynb", "date", "utf-8")}, scanner.leaks
    assert scanner.leak_count == 3
    for leak in scanner.leaks:
        assert leak["artifact"].startswith("artifacts/")  # relative to the work folder
        ctx = leak["context"].lower()
        assert p.last_name.lower() not in ctx and p.mrn.lower() not in ctx and str(p.birth_date.year) not in ctx, ctx
        assert f"<{leak['kind']}>" in leak["context"]
    assert scanner.exempt["clinical mode by design"]["phi_found"] >= 1  # found, and not a leak
    assert scanner.artifacts["metrics"] == {"files": 1, "bytes": (art / "metrics.json").stat().st_size}


def test_only_whole_words_and_whole_numbers_count() -> None:
    m = Matcher({"jansen": "name", "20211003": "date", "a-448-201": "mrn"})
    assert [h.string for h in m.find_text("Mr JANSEN_2, a-448-201.")[1]] == ["jansen", "a-448-201"]
    assert m.find_text("jansens 120211003 2021100312 1.20211003 0.20211003")[1] == []
    assert [h.encoding for h in m.find_bytes(b"\x00\x01" + "Jansen".encode("utf-16-le") + b"\x00\x00")] == ["utf-16-le"]


@pytest.mark.integration
@pytest.mark.slow
def test_a_dp_federation_leaks_no_phi(tiny_cohort: Path, tmp_path: Path) -> None:
    """The federation part alone (notes only, one round: the least that still trains, calibrates and sends), every
    file it writes and every message its nodes send, against every PHI string of the tiny cohort."""
    from workbench.bench.reliability.phi_federation import cohort_view, run_phi_federation
    from workbench.bench.reliability.phi_scan import phi_set, scan_work

    cohort = cohort_view(tiny_cohort, tmp_path / "cohort")
    fed = run_phi_federation(cohort, tmp_path / "federation", rounds=1, readers="test", modalities="notes",
                             timeout_s=400)
    assert fed["messages"] > 0 and not fed["errors"]
    phi = phi_set(tiny_cohort)
    scan = scan_work(tmp_path, phi, ["cohort", "federation"])
    assert len(phi.kinds) > 1000
    assert scan["leak_count"] == 0, scan["leaks"]
    assert scan["artifacts"]["message"]["files"] >= 1 and scan["artifacts"]["ledger"]["files"] == 3
    assert {"audit_log", "rounds", "log"} <= set(scan["artifacts"])
    # the positive control on real files: the hospital's own notes, exempt, are full of the strings searched
    assert sum(e["phi_found"] for e in scan["exempt"].values()) > 100
