"""Clinical decision-support workbench for pulmonary nodules (CT + EMR notes, federated, private, explained).

Entry points: ``workbench.data.load_ct_series``, ``workbench.data.load_cases``, ``workbench.data.deidentify``,
``workbench.models.build_model``, ``workbench.predict(model, case)``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def predict(model: Any, case: Any, **kw: Any) -> Any:
    """``workbench.prediction.predict``, imported on first use (torch and transformers are heavy)."""
    from workbench.runtime.predict import predict as _predict

    return _predict(model, case, **kw)
