"""Explanations and uncertainty: what a clinician checks before trusting a risk.

``workbench.explain.explain(model, case)`` -> ``Explanation`` (``attributions``); one case of a RUN explained in
memory, with its prediction, uncertainty and similar cases: ``explain_case`` -> ``CaseExplanation`` (``case``);
its pictures in ``figures``; its files in ``export`` (``write_explanation``); the checks in ``checks``.
"""

from workbench.explain.attributions import Explanation, explain

__all__ = ["Explanation", "explain"]
