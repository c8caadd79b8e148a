"""Out-of-distribution detectors: scores, thresholds, and the on-disk round trip."""

import numpy as np
import pytest

from sav_router.model.ood import MahalanobisOOD, NearestNeighbourOOD, detector_from_tensors, make_detector


def clusters(n_per_class: int, seed: int, dims: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Three tight unit-norm clusters around orthogonal directions."""
    rng = np.random.default_rng(seed)
    centers = np.eye(dims)[:3]
    x = np.concatenate([c + 0.05 * rng.standard_normal((n_per_class, dims)) for c in centers])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(3), n_per_class)


def test_knn_score_is_the_cosine_distance_to_the_kth_nearest_training_example():
    bank = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    between = np.array([[1.0, 1.0]], dtype=np.float32)  # 45 degrees from the first two
    one = NearestNeighbourOOD(k=1).fit(bank)
    two = NearestNeighbourOOD(k=2).fit(bank)
    three = NearestNeighbourOOD(k=3).fit(bank)
    assert one.score(bank[:1])[0] == pytest.approx(0.0, abs=1e-3)
    assert one.score(between)[0] == pytest.approx(1 - np.cos(np.pi / 4), abs=1e-3)
    assert two.score(between)[0] == pytest.approx(1 - np.cos(np.pi / 4), abs=1e-3)
    assert three.score(between)[0] == pytest.approx(1 - np.cos(3 * np.pi / 4), abs=1e-3)
    # the scale of an embedding does not matter, only its direction
    assert one.score(5 * between)[0] == pytest.approx(one.score(between)[0], abs=1e-6)


@pytest.mark.parametrize("name", ["mahalanobis", "knn"])
def test_off_topic_embeddings_score_above_the_threshold_and_held_out_ones_mostly_below(name):
    # GIVEN a detector fitted on three topics, its threshold at the 95th percentile of held-out rows
    x, y = clusters(100, seed=1)
    held_out, _ = clusters(200, seed=2)
    detector = make_detector(name, quantile=0.95).fit(x, y).fit_threshold(held_out)
    # WHEN new in-topic rows and rows about an unseen direction are scored
    fresh, _ = clusters(200, seed=3)
    rng = np.random.default_rng(4)
    novel = np.eye(8)[5] + 0.05 * rng.standard_normal((50, 8))
    # THEN about 5 % of in-topic rows and none of the novel ones pass as in-distribution
    assert 0.0 <= (detector.score(fresh) > detector.threshold_).mean() <= 0.10
    assert (detector.score(novel) > detector.threshold_).all()


@pytest.mark.parametrize("detector", [MahalanobisOOD(quantile=0.9), NearestNeighbourOOD(quantile=0.9, k=3)])
def test_detectors_survive_the_bundle_round_trip(detector):
    x, y = clusters(30, seed=5)
    detector.fit(x, y).fit_threshold(x)
    loaded = detector_from_tensors(detector.METHOD, detector.tensors(), threshold=detector.threshold_, quantile=0.9, params=detector.params())
    assert type(loaded) is type(detector) and loaded.params() == detector.params()
    assert loaded.threshold_ == detector.threshold_
    np.testing.assert_allclose(loaded.score(x), detector.score(x), atol=1e-6)


def test_an_unknown_method_is_refused_not_guessed():
    with pytest.raises(ValueError, match="unknown OOD method 'isolation-forest'"):
        detector_from_tensors("isolation-forest", {}, threshold=1.0, quantile=0.99)
    with pytest.raises(ValueError, match="unknown OOD detector"):
        make_detector("lof", quantile=0.99)


def test_outlier_exposure_counts_out_of_scope_neighbours_only_near_them_and_survives_the_bundle_format():
    from sav_router.model.ood import NearestNeighbourOOD, detector_from_tensors

    rng = np.random.default_rng(0)
    train = np.array([1.0, 0.0, 0.0]) + rng.normal(0, 0.05, size=(30, 3))
    outliers = np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.05, size=(12, 3))
    plain = NearestNeighbourOOD(k=1).fit(train)
    exposed = NearestNeighbourOOD(k=1).fit(train).fit_outliers(outliers)
    near_train, near_outlier = np.array([[1.0, 0.05, 0.0]]), np.array([[0.3, 0.0, 1.0]])
    # a request among training requests scores the same: none of its 10 nearest is out of scope
    assert exposed.score(near_train)[0] == pytest.approx(plain.score(near_train)[0])
    # one among out-of-scope examples gains one per out-of-scope neighbour: all 10 here
    assert exposed.score(near_outlier)[0] == pytest.approx(plain.score(near_outlier)[0] + 10)
    # an example scored without itself (own_outlier) is not its own neighbour
    alone = NearestNeighbourOOD(k=1).fit(train).fit_outliers(outliers[:1])
    assert alone.score(outliers[:1])[0] == pytest.approx(plain.score(outliers[:1])[0] + 1)
    assert alone.score(outliers[:1], own_outlier=np.array([0]))[0] == pytest.approx(plain.score(outliers[:1])[0])
    exposed.threshold_ = 0.3
    again = detector_from_tensors(exposed.METHOD, exposed.tensors(), threshold=0.3, quantile=0.99, params=exposed.params())
    assert again.score(near_outlier)[0] == pytest.approx(exposed.score(near_outlier)[0], abs=1e-3)
    # a bundle of the first exposure formula (no vote recorded) is refused, not scored differently
    with pytest.raises(ValueError, match="retrain"):
        detector_from_tensors(exposed.METHOD, exposed.tensors(), threshold=0.3, quantile=0.99, params={"k": 1})
