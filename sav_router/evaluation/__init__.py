"""Evaluation on labeled requests: metrics (pure numpy), report writing and plots."""
