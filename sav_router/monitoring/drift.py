"""Is live traffic still like the calibration sample? Three tests, one false-alarm rate.

The precision promise holds on traffic like the calibration sample. Over a
window of logged decisions the monitor tests:

1. the novelty-flagged share (decisions escalated `out_of_distribution`):
   one-sided exact binomial test against the reference share. The reference
   share is itself estimated from n calibration rows, so the test is run
   against its Clopper-Pearson upper bound at level alpha/6 and at level
   alpha/6 itself (union bound: at most alpha/3 in all);
2. the top-1 confidence distribution: two-sample Kolmogorov-Smirnov test
   (asymptotic p-value, conservative with ties) at level alpha/3;
3. the novelty-score distribution: the same, at level alpha/3.

Bonferroni over the three: on traffic like the calibration sample, one check
raises a false alarm with probability at most `alpha` (default 0.01).
When it fires, the remedy is named: annotate a new random sample of traffic
and recalibrate. Pure Python (math only): the AWS monitor Lambda runs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sav_router.core.defaults import DRIFT_ALPHA
from sav_router.core.stats import binomial_sf, clopper_pearson_upper, kolmogorov_sf, ks_statistic

ALPHA = DRIFT_ALPHA  # kept under its old name for callers
OUT_OF_DISTRIBUTION = "out_of_distribution"
REMEDY = (
    "live traffic no longer looks like the calibration sample: annotate a new random sample of it "
    "(`sav-router select --calibration-share 0.15 ...`, off-topic requests answered out_of_scope), "
    "import it with `--as calibrate`, then `sav-router recalibrate MODEL_DIR DROP --output NEW_DIR` (no fine-tuning) "
    "or retrain; `sav-router discover` groups the novel requests"
)


@dataclass
class DriftReport:
    n: int
    flagged: int
    flagged_share: float | None
    reference_share: float | None
    flagged_p_value: float
    confidence_ks: float
    confidence_p_value: float
    novelty_ks: float
    novelty_p_value: float
    alpha: float
    alarm: bool
    reasons: list[str] = field(default_factory=list)
    remedy: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for reports and the CLI."""
        if self.n == 0:
            return "monitor: no traffic to compare with the calibration sample"
        state = "ALARM: " + "; ".join(self.reasons) if self.alarm else "no drift detected"
        share = f"{self.flagged_share:.3f} vs {self.reference_share:.3f} in calibration" if self.reference_share is not None else "n/a"
        return (
            f"monitor ({self.n} requests, false-alarm rate <= {self.alpha:g} per check): {state} "
            f"[novelty-flagged share {share}, p={self.flagged_p_value:.3g}; confidence KS p={self.confidence_p_value:.3g}; "
            f"novelty KS p={self.novelty_p_value:.3g}]"
        )


def decision_values(records: Iterable[Mapping[str, Any]]) -> tuple[list[float], list[float], int]:
    """Confidences, novelty scores and the flagged count of routed or escalated decisions."""
    confidences: list[float] = []
    novelty: list[float] = []
    flagged = 0
    for record in records:
        if not isinstance(record, Mapping) or record.get("scores") is None and record.get("confidence") in (None, 0.0):
            continue  # a blank text or a model-unavailable escalation says nothing about the traffic
        try:
            confidences.append(float(record.get("confidence", 0.0)))
        except (TypeError, ValueError):
            continue
        if record.get("ood_score") is not None:
            novelty.append(float(record["ood_score"]))
        flagged += OUT_OF_DISTRIBUTION in (record.get("reasons") or ())
    return confidences, novelty, flagged


def check_drift(records: Iterable[Mapping[str, Any]], reference: Mapping[str, Any], *, alpha: float = ALPHA) -> DriftReport:
    """Compare a window of decision records with the manifest's calibration reference."""
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    confidences, novelty, flagged = decision_values(records)
    n = len(confidences)
    ref_n = int(reference.get("n") or 0)
    ref_flagged = int(reference.get("flagged") or 0)
    third = alpha / 3
    p_flag = 1.0
    reference_share = ref_flagged / ref_n if ref_n else None
    if n and ref_n:
        # the reference share is an estimate: test against its upper bound (union bound, alpha/3 in all)
        p0 = clopper_pearson_upper(ref_flagged, ref_n, 1.0 - third / 2)
        p_flag = min(1.0, binomial_sf(flagged, n, p0) * 2)
    d_conf = ks_statistic(confidences, reference.get("confidence") or [])
    p_conf = kolmogorov_sf(d_conf, n, ref_n) if reference.get("confidence") else 1.0
    d_nov = ks_statistic(novelty, reference.get("novelty") or [])
    p_nov = kolmogorov_sf(d_nov, len(novelty), ref_n) if novelty and reference.get("novelty") else 1.0
    reasons = []
    if p_flag <= third:
        reasons.append(f"novelty-flagged share {flagged}/{n} above the calibration sample's")
    if p_conf <= third:
        reasons.append("confidence distribution differs from the calibration sample's")
    if p_nov <= third:
        reasons.append("novelty-score distribution differs from the calibration sample's")
    return DriftReport(
        n=n, flagged=flagged, flagged_share=round(flagged / n, 6) if n else None, reference_share=reference_share,
        flagged_p_value=p_flag, confidence_ks=round(d_conf, 6), confidence_p_value=p_conf, novelty_ks=round(d_nov, 6),
        novelty_p_value=p_nov, alpha=alpha, alarm=bool(reasons), reasons=reasons, remedy=REMEDY if reasons else None,
    )
