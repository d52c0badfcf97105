"""How a privacy claim is shown: what reports, the monitor and the node ledger print beside an epsilon.

Shown by layers that never train (report, ui), so it lives here rather than beside the DP generator
(``workbench.train.dp_random``).
"""

from __future__ import annotations

NOT_PRIVATE = "not private: seeded randomness"


def privacy_label(epsilon: float, secure: bool, digits: int = 2) -> str:
    """How an epsilon is shown to people: the number, and when the randomness was seeded, that it is void."""
    text = f"{epsilon:.{digits}f}"
    return text if secure else f"{text} ({NOT_PRIVATE})"
