"""Runtime: everything needed to use a trained model and nothing needed to train one.

RUN folders (``run.load_run``, site discovery), case encoding (``encode``), calibration and uncertainty objects
(``calibration``, ``uncertainty``, ``run_uncertainty``), node-local similar cases (``similar``), batched inference
(``inference``), ``predict`` for one case, and a federated RUN's round log and its plot (``rounds``).
Imports only ``data`` and ``models`` (and the shared utilities).
"""
