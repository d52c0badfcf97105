"""A second DP accountant to check the workbench's against."""

from __future__ import annotations

import dp_accounting


def independent_epsilon(entries: list[tuple[float, float, int]], delta: float) -> float:
    """Google's dp-accounting RDP accountant over the same releases (a second implementation)."""
    acc = dp_accounting.rdp.RdpAccountant()
    for sigma, q, steps in entries:
        acc.compose(dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps))
    return float(acc.get_epsilon(delta))
