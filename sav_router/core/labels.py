"""Reserved annotation answers shared by every annotation path."""

OUT_OF_SCOPE = "out_of_scope"  # "none of these": never routed; counts as a misroute when routed
