"""No sweep writes a test figure into ``bench/results/`` (issue 16; docs/architecture.md §9, "How the figures are made").

Choices are made on ``val``: a sweep's output (any ``*.jsonl`` or any file named ``*sweep*`` under
``bench/results/``) may hold val figures only: no key names ``test``, and every record states the split its
figures were scored on, ``"split": "val"`` (a bare ``auroc`` says nothing about where it was measured). The two
sweeps that scored ``test`` were withdrawn; this guards against their return. The scanner itself is checked on
planted records first (and on the withdrawn files' shape), so a green run means the files were read, not skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


def sweep_files(root: Path) -> list[Path]:
    return sorted({*root.glob("*.jsonl"), *(p for p in root.iterdir() if p.is_file() and "sweep" in p.name.lower())})


def _records(path: Path) -> Iterator[object]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        yield from (json.loads(line) for line in text.splitlines() if line.strip())
    elif path.suffix == ".json":
        yield json.loads(text)
    else:  # a sweep's table in another format: every word is checked
        yield from text.split()


def mentions_of_test(obj: object) -> list[str]:
    """Keys naming ``test`` at any depth, and values that are the word ``test`` (a ``split`` field)."""
    found: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if "test" in str(k).lower():
                found.append(str(k))
            found += mentions_of_test(v)
    elif isinstance(obj, list):
        for v in obj:
            found += mentions_of_test(v)
    elif isinstance(obj, str) and "test" in obj.lower():
        found.append(obj)
    return found


def problems(record: object) -> list[str]:
    """What makes a sweep record unfit: keys or values naming test, or no ``"split": "val"``."""
    found = mentions_of_test(record)
    if not (isinstance(record, dict) and record.get("split") == "val"):
        found.append('no "split": "val"')
    return found


def test_the_scanner_finds_a_planted_test_figure(tmp_path: Path) -> None:
    (tmp_path / "lr_sweep.jsonl").write_text(json.dumps({"lr": 0.5, "split": "val", "auroc": 0.8}) + "\n"
                                             + json.dumps({"lr": 1.0, "split": "val", "runs": [{"test_auroc": 0.81}]}) + "\n")
    (tmp_path / "steps_sweep.json").write_text(json.dumps({"steps": 32, "split": "test", "auroc": 0.8}))
    # the withdrawn sweeps' shape: a bare figure, no split
    (tmp_path / "subset.jsonl").write_text(json.dumps({"train": "head", "eps": 1.0, "auroc": 0.78}) + "\n")
    (tmp_path / "clean.jsonl").write_text(json.dumps({"lr": 0.5, "split": "val", "auroc": 0.8}) + "\n")
    (tmp_path / "model.json").write_text(json.dumps({"n_test": 400}))  # a benchmark, not a sweep: not scanned
    files = sweep_files(tmp_path)
    assert [p.name for p in files] == ["clean.jsonl", "lr_sweep.jsonl", "steps_sweep.json", "subset.jsonl"]
    found = {p.name: [m for r in _records(p) for m in problems(r)] for p in files}
    assert found == {"clean.jsonl": [], "lr_sweep.jsonl": ["test_auroc"],
                     "steps_sweep.json": ["test", 'no "split": "val"'], "subset.jsonl": ['no "split": "val"']}


def test_no_sweep_in_bench_results_holds_a_test_figure() -> None:
    assert RESULTS.is_dir()
    offending = {p.name: m for p in sweep_files(RESULTS) if (m := [x for r in _records(p) for x in problems(r)])}
    assert not offending, f"sweep output scored on test (choices are made on val): {offending}"
