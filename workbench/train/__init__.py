"""Training: the local trainer (plain and private), metrics, calibration, runs. Knows no Flower."""
