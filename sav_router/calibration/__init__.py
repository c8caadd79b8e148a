"""Calibration: temperature scaling, and thresholds chosen with a precision guarantee (Learn-then-Test)."""
