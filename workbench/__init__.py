"""Clinical decision-support workbench for pulmonary nodules (CT + EMR notes, federated, private, explained).

Entry points: ``workbench.data.load_ct_series``, ``workbench.data.load_cases``, ``workbench.data.deidentify``;
the model, ``predict`` and ``explain`` arrive with their issues.
"""

__version__ = "0.1.0"
