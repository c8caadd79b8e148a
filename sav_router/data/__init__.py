"""Annotated data: loading and validation, leakage-free splits, augmentation."""
