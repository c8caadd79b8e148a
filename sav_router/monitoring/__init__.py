"""Watching the assumption behind the precision promise: live traffic like the calibration sample."""
