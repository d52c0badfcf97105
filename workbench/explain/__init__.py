"""Explanations and uncertainty: what a clinician checks before trusting a risk."""
