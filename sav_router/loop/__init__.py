"""The improvement loop: workspace registry, observer mode, comparison and gate, active learning, imports, the quickstart."""
