"""sav-router: a precision-first router for after-sales customer requests.

Importing this package stays light (no torch, transformers or numpy): the
routing policy and the bundle metadata are used by AWS Lambda functions.
Heavy subpackages (`model`, `training`, `calibration`, `evaluation`) are imported only where needed.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
