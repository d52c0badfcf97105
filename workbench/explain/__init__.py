"""Explanations and uncertainty: what a clinician checks before trusting a risk.

``workbench.explain.explain(model, case)`` -> ``Explanation`` (``attributions``); per-site uncertainty of a RUN in
``run_uncertainty``; node-local similar cases in ``similar``; the checks in ``checks``; files in ``export``.
"""

from workbench.explain.attributions import Explanation, explain

__all__ = ["Explanation", "explain"]
