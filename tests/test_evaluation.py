import numpy as np
import pytest
import torch

from helpers import evaluation as E


def test_energy_distance_is_zero_for_identical_sets_and_grows_with_a_shift():
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    assert E.energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    assert E.energy_distance(x, x + 1.0) > E.energy_distance(x, x + 0.1) > 0
    with pytest.raises(ValueError, match="non-empty"):
        E.energy_distance(x, torch.zeros(0, 2))


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_knn_equals_brute_force(chunk):
    g = torch.Generator().manual_seed(chunk)
    q, r = torch.randn(50, 5, generator=g), torch.randn(80, 5, generator=g)
    full = torch.cdist(q, r)
    expected = full.sort(dim=1).values[:, :3].mean(1)
    assert torch.allclose(E.knn_score(q, r, k=3, chunk=chunk), expected, atol=1e-5)
    far = E.knn(q, r, 2, chunk=chunk, largest=True)[1]
    assert torch.equal(far, full.topk(2, dim=1).indices)


def test_knn_is_order_invariant_and_finds_exact_matches():
    g = torch.Generator().manual_seed(1)
    r = torch.randn(100, 4, generator=g)
    q = torch.cat([r[:5], torch.randn(5, 4, generator=g)])
    perm = torch.randperm(100, generator=g)
    assert torch.allclose(E.knn_score(q, r, 2), E.knn_score(q, r[perm], 2))
    d, i = E.knn(q, r, 1)
    assert torch.all(d[:5, 0] == 0) and torch.equal(i[:5, 0], torch.arange(5))
    d, i = E.knn(r, r, 3, exclude_self=True, chunk=16)
    assert not (i == torch.arange(100)[:, None]).any()


def test_knn_bad_input():
    r = torch.randn(10, 3)
    with pytest.raises(ValueError, match="k must lie"):
        E.knn_score(r, r, k=0)
    with pytest.raises(ValueError, match="k must lie"):
        E.knn_score(r, r, k=11)
    with pytest.raises(ValueError, match="dimensions differ"):
        E.knn_score(torch.randn(2, 4), r)
    with pytest.raises(ValueError, match="empty"):
        E.knn_score(torch.zeros(0, 3), r)


def blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    return centres[y] + torch.randn(n, 4, generator=g), y


def test_linear_probe_learns_separable_classes():
    (xtr, ytr), (xte, yte) = blobs(600, 0), blobs(300, 1)
    out = E.linear_probe(xtr, ytr, xte, yte, epochs=30)
    assert out["test_acc"] > 0.9 and out["train_acc"] > 0.9


def test_linear_probe_never_trains_on_test_features():
    (xtr, ytr), (xte, yte) = blobs(300, 0), blobs(100, 1)
    a = E.linear_probe(xtr, ytr, xte, yte, epochs=5)["probe"]
    poisoned = torch.full_like(xte, float("nan"))
    b = E.linear_probe(xtr, ytr, poisoned, torch.zeros_like(yte), epochs=5)["probe"]
    assert torch.equal(a.weight, b.weight) and torch.isfinite(b.weight).all()


def test_knn_graph_excludes_each_point_itself():
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(2))
    graph = E.knn_graph(x, 4)
    d = torch.cdist(x, x).fill_diagonal_(float("inf"))
    assert torch.equal(graph, d.topk(4, largest=False).indices)


def test_split_probe_holds_out_a_disjoint_tenth(monkeypatch):
    x, y = blobs(200, 0)
    seen = {}

    def fake(train_x, train_y, test_x, test_y, **kw):
        seen.update(train=train_x, test=test_x)
        return {}

    monkeypatch.setattr(E, "linear_probe", fake)
    E.split_probe(x, y, 0.1)
    assert len(seen["test"]) == 20 and len(seen["train"]) == 180
    rows = {tuple(r.tolist()) for r in seen["train"]}
    assert not any(tuple(r.tolist()) in rows for r in seen["test"])
    with pytest.raises(ValueError, match="test_fraction"):
        E.split_probe(x, y, 1.0)


def test_roc_auc_is_the_probability_an_anomaly_scores_higher():
    rng = np.random.default_rng(0)
    normal, odd = rng.normal(0, 1, 300), rng.normal(1, 1, 200)
    brute = ((odd[:, None] > normal[None]).mean() + 0.5 * (odd[:, None] == normal[None]).mean())
    out = E.roc(normal, odd)
    assert out["auc"] == pytest.approx(brute, abs=1e-12)
    assert out["fpr"][0] == 0 and out["tpr"][-1] == 1
    assert E.roc([0, 1], [2, 3])["auc"] == 1.0
    with pytest.raises(ValueError, match="both"):
        E.roc([], [1.0])


def test_kmeans_silhouette_and_centres_in_the_plane():
    x, y = blobs(300, 0)
    x = x + 10 * torch.nn.functional.one_hot(y, 4)          # well separated
    labels, centres = E.kmeans(x, 3, seed=0)
    assert centres.shape == (3, 4)
    # the clusters are the blobs, up to renaming
    assert len({(int(a), int(b)) for a, b in zip(labels, y)}) == 3
    assert E.silhouette(x, labels) > 0.6
    assert E.silhouette(x, labels, sample=100) == pytest.approx(E.silhouette(x, labels), abs=0.1)
    plane = np.array([[0.0, 0], [2, 0], [0, 4], [9, 9]])
    assert np.allclose(E.centres_in_plane(plane[:3], np.array([0, 0, 1]), 3)[:2], [[1, 0], [0, 4]])
    assert np.isnan(E.centres_in_plane(plane[:3], np.array([0, 0, 1]), 3)[2]).all()


def test_pca_matches_the_covariance_eigenvalues():
    x = torch.randn(500, 5, generator=torch.Generator().manual_seed(0)) * torch.tensor([5.0, 3, 1, 0.5, 0.1])
    proj, var = E.pca(x, 2)
    eig = np.sort(np.linalg.eigvalsh(np.cov(x.numpy().T)))[::-1]
    assert np.allclose(var, eig, rtol=1e-4)
    assert proj.shape == (500, 2) and np.allclose(proj.var(0, ddof=1), eig[:2], rtol=1e-3)


def test_effective_rank_counts_equal_directions():
    assert E.effective_rank(np.ones(7)) == pytest.approx(7)
    assert E.effective_rank([3.0, 0, 0, 0]) == pytest.approx(1)
    assert E.effective_rank([1.0, 1, 0, 0]) == pytest.approx(2)          # zero variances do not count
    assert 1 < E.effective_rank([0.9, 0.1]) < 2
    with pytest.raises(ValueError, match="spectrum"):
        E.effective_rank([0.0, 0.0])


def test_tsne_shape_and_bad_input():
    x, _ = blobs(60, 0)
    assert E.tsne(x).shape == (60, 2)
    with pytest.raises(ValueError, match="t-SNE"):
        E.tsne(x[:3])


def test_knn_label_confusion_counts_the_labels_of_each_class_neighbours():
    g = torch.Generator().manual_seed(3)
    train_x, train_y = torch.randn(60, 3, generator=g), torch.randint(0, 3, (60,), generator=g)
    test_x, test_y = torch.randn(20, 3, generator=g), torch.randint(0, 3, (20,), generator=g)
    m = E.knn_label_confusion(train_x, train_y, test_x, test_y, k=4, n_classes=4)
    idx = torch.cdist(test_x, train_x).topk(4, largest=False).indices
    for c in range(3):
        labels = train_y[idx[test_y == c]].reshape(-1)
        assert torch.allclose(m[c, :3], torch.bincount(labels, minlength=3).float() / len(labels))
    assert torch.allclose(m[:3].sum(1), torch.ones(3)) and m[3].sum() == 0   # class 3 has no test point
    # a representation that separates the classes perfectly gives the identity
    sep_train, sep_test = train_x + 100 * train_y[:, None], test_x + 100 * test_y[:, None]
    assert torch.equal(E.knn_label_confusion(sep_train, train_y, sep_test, test_y, k=4), torch.eye(3))


@pytest.mark.parametrize("method", ["tsne", "pca", "kmeans"])
@pytest.mark.parametrize("bad, message", [(np.zeros((50, 8)), "all 50 rows are identical, a collapsed"),
                                          (np.full((50, 8), np.nan), "400 feature values are NaN"),
                                          (np.ones(50), r"needs \(N, d\) features")])
def test_embeddings_and_clusters_refuse_features_they_cannot_use(method, bad, message):
    """All-zero features crash scikit-learn's t-SNE (the kernel dies): they raise a clear error first."""
    with pytest.raises(ValueError, match=message):
        getattr(E, method)(bad)


def test_checked_features_pass_real_features_unchanged():
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    assert np.array_equal(E.checked_features(x, "PCA"), x)
    x[:, 1:] = 0.0                                                  # one varying direction is enough
    assert E.checked_features(x, "PCA").shape == (30, 4)


def test_cluster_majorities_give_size_majority_and_share():
    out = E.cluster_majorities(np.array([0, 0, 0, 2, 2]), np.array([1, 1, 3, 4, 4]))
    assert out[0] == {"size": 3, "majority": 1, "share": pytest.approx(2 / 3)}
    assert out[1] == {"size": 0, "majority": -1, "share": 0.0}
    assert out[2] == {"size": 2, "majority": 4, "share": 1.0}
    with pytest.raises(ValueError, match="one length"):
        E.cluster_majorities(np.array([0, 1]), np.array([0]))
