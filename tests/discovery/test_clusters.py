"""Grouping novel requests into candidate intents."""

import numpy as np

from sav_router.discovery.clusters import Candidate, accepted_rows, build_clusters, novel_from_queue, novel_from_traffic


def test_two_new_topics_become_two_clusters_with_size_examples_and_nearest_labels():
    # GIVEN novel requests whose embeddings form two tight groups, and a few stragglers
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    embeddings = np.concatenate([a + 0.05 * rng.normal(size=(6, 16)), b + 0.05 * rng.normal(size=(4, 16)), rng.normal(size=(2, 16))])
    candidates = [Candidate(f"r{i}", f"text {i}") for i in range(len(embeddings))]
    probabilities = np.tile([0.7, 0.2, 0.1], (len(embeddings), 1))
    # WHEN clustered
    clusters = build_clusters(candidates, embeddings, probabilities, ["refund", "delivery", "account"], min_size=3)
    # THEN the two groups come out, largest first, each with its members, examples and nearest labels
    assert [(c.cluster, c.size) for c in clusters] == [("c1", 6), ("c2", 4)]
    assert {m["id"] for m in clusters[0].members} == {f"r{i}" for i in range(6)}
    assert clusters[0].examples[0] in {f"text {i}" for i in range(6)} and clusters[0].cohesion > 0.9
    assert clusters[1].nearest_labels[0] == {"label": "refund", "score": 0.7}
    # AND accepting one turns its members into teach annotations of the new label
    rows = accepted_rows(clusters[1].to_dict(), "crypto_wallet", reviewer="ana", when="2026-01-01T00:00:00+00:00")
    assert {(r["label"], r["split"]) for r in rows} == {("crypto_wallet", "teach")} and len(rows) == 4


def test_only_requests_escalated_as_novel_are_candidates():
    queue = [
        {"id": "1", "text": "bitcoin please", "reasons": ["out_of_distribution"]},
        {"id": "2", "text": "refund?", "reasons": ["low_confidence"]},
        {"id": "3", "text": "audit me", "reasons": ["out_of_distribution"], "audit": True},
        {"id": "4", "text": "Bitcoin   please", "reasons": ["out_of_distribution", "ambiguous"]},
    ]
    assert [c.id for c in novel_from_queue(queue)] == ["1"]  # the normalized duplicate is dropped
    traffic = [{"id": "t1", "text": "poem", "production": {"reasons": ["out_of_distribution"]}}, {"id": "t2", "text": "x", "production": {"reasons": []}}]
    assert [c.id for c in novel_from_traffic(traffic)] == ["t1"]
