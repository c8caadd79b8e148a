"""What the precision promise covers, in words the bundle, the report and `train` print.

Calibrated on rows carved from the teach data, the promise is about requests on
annotated topics: nobody measured how the router treats topics nobody
annotated. Calibrated on `calibrate` rows (an annotated random sample of live
traffic, off-topic requests answered out of scope), it covers traffic like that
sample, off-topic share included. Pure Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ANNOTATED_TOPICS = "annotated-topics"
TRAFFIC_SAMPLE = "traffic-sample"

HOW_TO_STRENGTHEN = (
    "to cover off-topic traffic too, annotate a random sample of live traffic "
    "(`sav-router select --calibration-share 0.15 ...`, answer off-topic requests `out_of_scope`), "
    "import it with `sav-router import BATCH.calibrate.json --as calibrate` and retrain "
    "(or `sav-router recalibrate MODEL_DIR DROP --output NEW_DIR`, without fine-tuning)"
)


def promise(scope: str, *, target: float, confidence: float, out_of_scope_rows: int = 0) -> dict[str, Any]:
    """The `promise` block of a manifest's calibration section."""
    if scope == TRAFFIC_SAMPLE:
        text = (
            f"routed precision >= {target} with {confidence:.0%} confidence on traffic like the calibrate sample, "
            f"off-topic share included ({out_of_scope_rows} out-of-scope rows in it); "
            "`sav-router monitor` watches that live traffic stays like it"
        )
        return {"scope": scope, "text": text}
    text = (
        f"routed precision >= {target} with {confidence:.0%} confidence on requests about annotated topics only: "
        "requests on topics nobody annotated are not covered; " + HOW_TO_STRENGTHEN
    )
    return {"scope": ANNOTATED_TOPICS, "text": text, "how_to_strengthen": HOW_TO_STRENGTHEN}


def promise_text(calibration: Mapping[str, Any]) -> str:
    """The promise of a manifest's calibration section (older bundles: annotated topics)."""
    block = calibration.get("promise")
    if isinstance(block, Mapping) and block.get("text"):
        return str(block["text"])
    return promise(ANNOTATED_TOPICS, target=calibration.get("target_precision", 0.95), confidence=calibration.get("confidence", 0.95))["text"]
