"""Annotation doubts: which annotated rows probably carry a wrong label (confident learning).

    scores.py   out-of-sample class probabilities (k-fold on frozen embeddings; the bundle's own
                scores for rows it never trained on)
    find.py     the ranking: confident learning, near-duplicate conflicts, evidence, error-rate estimates

A doubt is settled by a blind second opinion (`review/recheck.py`).
"""
