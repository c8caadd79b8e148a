"""AWS runtime logic behind the Lambda handlers in `lambdas/`.

Light on purpose: boto3 (present in every Lambda runtime), the pure-Python core
(`sav_router.core.policy`, `sav_router.core.bundle`, `sav_router.loop.comparison`,
`sav_router.data.annotations`) and nothing else. The routing Lambda must stay
small, so no module here imports torch, transformers or numpy at import time;
the one step that needs the numeric evaluation code (`evaluation_step`) imports
it inside the function, in a Lambda that bundles numpy / scipy / scikit-learn.
Each Lambda asset ships only the modules its handler imports, transitively, lazy
imports included (`infra/lambda_sources.py`): an import here adds that module to
the assets of the functions that use this one.
"""
