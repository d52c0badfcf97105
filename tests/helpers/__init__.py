"""Helpers shared by test modules: tiny synthetic data and models, an independent DP accountant, the cohort's
planted PHI, tool detection. Test modules import these, never each other."""
