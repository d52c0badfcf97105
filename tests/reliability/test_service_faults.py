"""``bench reliability --part service_faults``, small: four studies pushed by a real Orthanc into ``workbench
serve``, which is SIGKILLed (by its PID) while a study is being scored and started again at once; nothing is
lost, nothing is sent twice, nothing is left half-written, and the part's JSON has the keys the issue names."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.service import pacs_sandbox

pytestmark = pytest.mark.skipif(pacs_sandbox.available() is not None, reason=str(pacs_sandbox.available()))


def test_a_burst_with_a_kill_and_a_restart_loses_nothing_sends_nothing_twice_and_leaves_nothing_torn(
        tiny_calibrated_run: Path, tiny_cohort: Path, tmp_path: Path) -> None:
    from workbench.bench.reliability.service_faults import fault_burst
    from workbench.bench.serve_bench import ct_cases

    out = fault_burst(tiny_calibrated_run, ct_cases(tiny_cohort, 4), tmp_path / "burst", kills=1, steps=4,
                      quiet_s=3.0, timeout_s=300)
    s = out["service"]
    assert out["keys"]["service"] == {"studies": 4, "lost": 0, "duplicated": 0, "half_written": 0}, s["problems"]
    assert s["kills"] == 1 and s["restarts"] == 1 and s["ended_in_time"], s["kill_log"]
    assert s["kill_log"][0]["work_stages"], s["kill_log"]  # killed with a study in hand, not between studies
    # every study ends done; a part of one cut by the kill may sit in quarantine beside it (its missing slices
    # named) when the PACS pushed it again later than quiet_s after the restart
    assert s["good_studies_done"] == 4 and s["outcomes"].get("done", 0) + s["outcomes"].get(
        "done + another copy quarantined", 0) == 4, s
    assert s["scored_on_part"] == 0, s["problems"]["scored_on_part"]
    assert set(s["checks"]) >= {"studies", "lost", "duplicated", "half_written"}
