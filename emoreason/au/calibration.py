"""Placeholder until scripts/au_calibrate.py writes the fitted values."""
CALIBRATION: dict = {"units": {}, "thresholds": {}}
REPORT: dict = {}
