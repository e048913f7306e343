"""Evaluation: sample quality (energy distance) and, for the representation notebooks, probes and kNN."""
from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.manifold import TSNE
from sklearn.metrics import roc_auc_score, roc_curve, silhouette_score


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance 2·E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ (Székely & Rizzo 2013), V-statistic.

    Zero only when the two distributions agree; two samples of one distribution give a small positive value
    (about 2·E‖X − X'‖/n from the diagonals), so compare it with that floor.
    """
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise ValueError(f"energy_distance needs two non-empty (N, d) sets of one dimension, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


# ------------------------------------------------------------------------------------ representations

def _check_sets(query: torch.Tensor, reference: torch.Tensor, k: int | None = None) -> None:
    if query.ndim != 2 or reference.ndim != 2:
        raise ValueError(f"features must be (N, d) matrices, got {tuple(query.shape)} and {tuple(reference.shape)}")
    if not len(query) or not len(reference):
        raise ValueError("the query and reference sets must not be empty")
    if query.shape[1] != reference.shape[1]:
        raise ValueError(f"feature dimensions differ: query {query.shape[1]}, reference {reference.shape[1]}")
    if k is not None and not 1 <= k <= len(reference):
        raise ValueError(f"k must lie in 1..{len(reference)} (the reference set's size), got {k}")


def knn(query: torch.Tensor, reference: torch.Tensor, k: int, chunk: int = 1024, largest: bool = False,
        exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest (or, with `largest`, farthest) reference points of every query, by ℓ2 distance.

    Queries are processed `chunk` at a time, so memory stays at chunk × len(reference) distances instead of the
    full matrix. With `exclude_self` (query set = reference set, same order) a point is never its own neighbour.
    Returns distances and indices, each (len(query), k).
    """
    _check_sets(query, reference, k + int(exclude_self))
    for name, x in (("query", query), ("reference", reference)):
        if not torch.isfinite(x).all():
            raise ValueError(f"the {name} features hold NaN or infinite values: no neighbour is defined for them")
    dists, idxs = [], []
    for start in range(0, len(query), chunk):
        d = torch.cdist(query[start:start + chunk].float(), reference.float())     # (chunk, M)
        if exclude_self:
            rows = torch.arange(len(d))
            d[rows, rows + start] = float("-inf") if largest else float("inf")
        v, i = d.topk(k, dim=1, largest=largest)
        dists.append(v)
        idxs.append(i)
    return torch.cat(dists), torch.cat(idxs)


def knn_graph(features: torch.Tensor, k: int) -> torch.Tensor:
    """Each point's k nearest *other* points of the same set (ℓ2): (N, k) indices in the set's own order."""
    return knn(features, features, k, exclude_self=True)[1]


def knn_label_confusion(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                        k: int = 10, n_classes: int | None = None) -> torch.Tensor:
    """(C, C) matrix whose row c holds the label frequencies among the k nearest training points of the test points
    of class c (rows sum to 1): which classes a representation entangles."""
    _, idx = knn(test_x, train_x, k)                                                # (N_test, k)
    n = n_classes or int(max(train_y.max(), test_y.max())) + 1
    counts = torch.zeros(n, n)
    counts.index_put_((test_y[:, None].expand_as(idx).reshape(-1), train_y[idx].reshape(-1)),
                      torch.ones(idx.numel()), accumulate=True)
    return counts / counts.sum(1, keepdim=True).clamp(min=1)


def knn_score(query: torch.Tensor, reference: torch.Tensor, k: int = 2, chunk: int = 1024) -> torch.Tensor:
    """Inverse-density anomaly score: the mean ℓ2 distance to the k nearest reference points. (len(query),)."""
    return knn(query, reference, k, chunk)[0].mean(dim=1)


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 epochs: int = 100, lr: float = 1e-2, weight_decay: float = 1e-4, batch_size: int = 1024,
                 seed: int = 0) -> dict:
    """Linear-probe accuracy: one `nn.Linear` trained on the **train** features only, scored on the test features.

    Features are standardised with the training set's mean and standard deviation; Adam on the cross-entropy,
    `epochs` passes over shuffled mini-batches. Returns test and train accuracy and the probe.
    """
    _check_sets(test_x, train_x)
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError("features and labels must have the same length")
    for name, y in (("train", train_y), ("test", test_y)):
        if y.is_floating_point() or y.dtype == torch.bool or y.min() < 0:
            raise ValueError(f"{name} labels must be class indices 0, 1, 2... (integers >= 0), got {y.dtype} "
                             f"{y.min().item()}..{y.max().item()}")
    unseen = sorted(set(test_y.unique().tolist()) - set(train_y.unique().tolist()))
    if unseen:
        warnings.warn(f"test classes {unseen} never occur in the training labels: the probe cannot predict them, "
                      "so their test points count as errors", stacklevel=2)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    g = torch.Generator().manual_seed(seed)
    probe = torch.nn.Linear(train_x.shape[1], n_classes)
    with torch.no_grad():
        probe.weight.normal_(0, 0.01, generator=g)
        probe.bias.zero_()
    opt = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    xs = (train_x.float() - mean) / std
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=g)
        for start in range(0, len(xs), batch_size):
            idx = order[start:start + batch_size]
            loss = torch.nn.functional.cross_entropy(probe(xs[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        train_acc = (probe(xs).argmax(1) == train_y).float().mean().item()
        test_acc = (probe((test_x.float() - mean) / std).argmax(1) == test_y).float().mean().item()
    return {"test_acc": test_acc, "train_acc": train_acc, "probe": probe}


def split_probe(x: torch.Tensor, y: torch.Tensor, test_fraction: float = 0.1, seed: int = 0, **kwargs) -> dict:
    """`linear_probe` on a random (1 − f)/f split of one labelled set, for embeddings with no test images (Laplacian
    eigenmaps, per-image codes)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    return linear_probe(x[train], y[train], x[test], y[test], seed=seed, **kwargs)


# ---------------------------------------------------------------------------------- tasks without labels

def roc(normal_scores, anomaly_scores) -> dict:
    """ROC curve and AUC (scikit-learn) of an anomaly score, higher = more anomalous; anomalies are positives."""
    normal, anomaly = np.asarray(normal_scores, dtype=np.float64), np.asarray(anomaly_scores, dtype=np.float64)
    if not len(normal) or not len(anomaly):
        raise ValueError("the ROC needs both normal and anomalous scores")
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomaly))]
    scores = np.r_[normal, anomaly]
    fpr, tpr, _ = roc_curve(labels, scores)
    return {"fpr": fpr, "tpr": tpr, "auc": float(roc_auc_score(labels, scores))}


def checked_features(features, method: str, min_rows: int = 2) -> np.ndarray:
    """`features` as a float32 (N, d) array, or a ValueError naming `method` when they cannot be embedded or
    clustered: not 2-D, fewer than `min_rows` rows, NaN/infinite values, or every row the same (a collapsed
    representation, or an all-zero cache: scikit-learn's t-SNE crashes the kernel on it)."""
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or len(x) < min_rows:
        raise ValueError(f"{method} needs (N, d) features with N ≥ {min_rows}, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{method}: {int((~np.isfinite(x)).sum())} feature values are NaN or infinite; "
                         "recompute the features (a diverged encoder or a damaged cache)")
    if (x.max(0) == x.min(0)).all():
        raise ValueError(f"{method}: all {len(x)} rows are identical, a collapsed representation (or all-zero "
                         "features): there is nothing to embed or cluster. Check the encoder (e.g. its variance "
                         "term) or delete the feature cache")
    return x


def kmeans(features, n_clusters: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """K-means (scikit-learn, k-means++ with 10 restarts): cluster labels (N,) and centres (n_clusters, d)."""
    x = checked_features(features, "k-means", min_rows=n_clusters)
    km = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(x)
    return km.labels_, km.cluster_centers_


def centres_in_plane(embedded: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Cluster centres drawn in a 2-D embedding (t-SNE has no map for new points): the mean of each cluster's
    members' embedded points. (n_clusters, 2); NaN for a cluster with no member in `embedded`."""
    embedded, labels = np.asarray(embedded), np.asarray(labels)
    return np.stack([embedded[labels == c].mean(0) if (labels == c).any() else np.full(2, np.nan)
                     for c in range(n_clusters)])


def silhouette(features, labels, sample: int | None = None, seed: int = 0) -> float:
    """Mean silhouette coefficient (Rousseeuw 1987) in the original feature space, on a random `sample` of the
    points when given (the exact score needs all N² distances)."""
    x, labels = np.asarray(features, dtype=np.float32), np.asarray(labels)
    sample = None if sample is None or sample >= len(x) else sample
    return float(silhouette_score(x, labels, sample_size=sample, random_state=seed))


def tsne(features, seed: int = 0) -> np.ndarray:
    """t-SNE to 2-D (van der Maaten & Hinton 2008; scikit-learn's Barnes-Hut, PCA initialisation): (N, 2).
    Perplexity 30, or (N − 1)/3 for small sets."""
    x = checked_features(features, "t-SNE", min_rows=4)
    return TSNE(2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca", random_state=seed).fit_transform(x)


def pca(features, n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Projection on the top principal components and the variance along every component (descending)."""
    x = torch.as_tensor(checked_features(features, "PCA"), dtype=torch.float64)
    x = x - x.mean(0)
    _, s, vt = torch.linalg.svd(x, full_matrices=False)
    return (x @ vt[:n_components].T).float().numpy(), (s ** 2 / (len(x) - 1)).numpy()


def effective_rank(spectrum) -> float:
    """exp of the entropy of the normalised variance spectrum (Roy & Vetterli 2007): d for d equal variances,
    1 when one direction holds all of it."""
    p = np.asarray(spectrum, dtype=np.float64)
    if p.ndim != 1 or not len(p) or (p < 0).any() or p.sum() <= 0:
        raise ValueError("the spectrum must be a non-empty vector of variances >= 0, not all zero")
    p = p / p.sum()
    return float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum()))


def cluster_majorities(clusters, labels) -> list[dict]:
    """For each cluster 0, 1, ... of `clusters` (N,): its `size`, its most frequent label (`majority`) and that
    label's `share` of the cluster; a cluster with no member gets size 0, majority -1, share 0."""
    clusters, labels = np.asarray(clusters), np.asarray(labels)
    if clusters.shape != labels.shape or clusters.ndim != 1:
        raise ValueError(f"clusters {clusters.shape} and labels {labels.shape} must be two vectors of one length")
    out = []
    for c in range(int(clusters.max()) + 1):
        members = labels[clusters == c]
        if not len(members):
            out.append({"size": 0, "majority": -1, "share": 0.0})
            continue
        counts = np.bincount(members)
        out.append({"size": len(members), "majority": int(counts.argmax()),
                    "share": float(counts.max() / len(members))})
    return out
