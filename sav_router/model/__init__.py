"""The model: encoder network, novelty detectors, inference backends, and Router (a loaded bundle: texts -> decisions)."""
