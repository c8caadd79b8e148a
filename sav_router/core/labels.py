"""Reserved annotation answers shared by every annotation path.

"None of these" is an answer, not a missing one: an annotator (Label Studio,
`review`, the web console) marks a request out of scope when no team's topic
fits it (spam, chit-chat, another department, a new kind of request). Such a
request must never be routed, so routing one is a misroute wherever precision
is measured (calibration, evaluation, comparison, the audit estimate). In
`calibrate` and `check` rows any label the model was not trained on counts as
out of scope too: the model cannot route it right.

The name is configurable (explicit argument > $SAV_ROUTER_OUT_OF_SCOPE_LABEL >
OUT_OF_SCOPE) for teams whose annotation tool already uses another word.
Pure Python: the routing Lambda and the CLI parser import it.
"""

from __future__ import annotations

from collections.abc import Collection

from sav_router.env import OUT_OF_SCOPE_LABEL, resolve

OUT_OF_SCOPE = "out_of_scope"  # "none of these": never routed; counts as a misroute when routed


def out_of_scope_label(explicit: str | None = None) -> str:
    """The reserved answer's name in this deployment."""
    name = str(resolve(explicit, OUT_OF_SCOPE_LABEL, OUT_OF_SCOPE)).strip()
    if not name:
        raise ValueError(f"the out-of-scope label must not be blank (check ${OUT_OF_SCOPE_LABEL})")
    return name


def is_out_of_scope(label: str | None, known_labels: Collection[str], *, name: str | None = None) -> bool:
    """True for the reserved answer and for any label the model does not know."""
    if label is None:
        return False
    return label == out_of_scope_label(name) or label not in known_labels
