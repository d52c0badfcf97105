"""ipywidgets components the notebooks wire together: CT viewer, case panels, federated-run monitor."""
