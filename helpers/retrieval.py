"""Counts behind the retrieval and anomaly answers of notebook 03: neighbour label rates beside their chance
levels, how concentrated the far lists are, and the ink of digit images."""
from __future__ import annotations

import numpy as np
from scipy import ndimage
import torch


def neighbour_rates(query_labels, near, far, labels, group) -> dict:
    """Label rates of each query's retrieved lists, each beside its chance level.

    `query_labels` (Q,) are the queries' classes, `near` and `far` (Q, k) indices into `labels` (N,), and `group`
    (C,) bool maps a class to one of two kinds (e.g. vehicle vs animal). Returns the share of the near and far lists
    that share the query's class (`same_near`, `same_far`), the share of the far lists of the other kind
    (`other_kind_far`), and the rates a list drawn at random from the N images would have: `chance_same` (mean
    over queries of the frequency of the query's class) and `chance_other_kind` (of the other kind's frequency).
    """
    labels = torch.as_tensor(labels)
    q = torch.as_tensor(query_labels)
    group = torch.as_tensor(group, dtype=torch.bool)
    near, far = torch.as_tensor(near), torch.as_tensor(far)
    if near.shape[0] != len(q) or far.shape[0] != len(q):
        raise ValueError(f"{len(q)} queries but near {tuple(near.shape)} and far {tuple(far.shape)}")
    freq = torch.bincount(labels, minlength=len(group)).double() / len(labels)          # (C,)
    kind_freq = torch.stack([freq[~group].sum(), freq[group].sum()])                      # (2,) animal, vehicle
    return {"same_near": (labels[near] == q[:, None]).double().mean().item(),
            "same_far": (labels[far] == q[:, None]).double().mean().item(),
            "other_kind_far": (group[labels[far]] != group[q][:, None]).double().mean().item(),
            "chance_same": freq[q].mean().item(),
            "chance_other_kind": kind_freq[(~group[q]).long()].mean().item()}


def concentration(lists, top: int = 10) -> dict:
    """How few images fill a set of retrieved lists (Q, k): `distinct` images among the `slots` = Q·k entries,
    and the share of the slots taken by the `top` most frequent images (`top_share`)."""
    lists = np.asarray(lists).ravel()
    if lists.size == 0:
        raise ValueError("no retrieved lists")
    counts = np.sort(np.bincount(lists))[::-1]
    return {"distinct": int((counts > 0).sum()), "slots": int(lists.size),
            "top_share": float(counts[:top].sum() / lists.size)}


def _grey(images) -> np.ndarray:
    """uint8 images (N, H, W, 3) or (N, H, W) as float grey levels (N, H, W), the mean over the colour channels."""
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise ValueError(f"images must be uint8 (N, H, W[, 3]), got {x.dtype} {x.shape}")
    return x.mean(axis=-1) if x.ndim == 4 else x.astype(float)


def ink_fraction(images, threshold: int = 128) -> np.ndarray:
    """The share of each image's pixels brighter than `threshold` (mean over the colour channels; uint8 images
    (N, H, W, 3) or (N, H, W)): how much of a white-on-black digit is stroke. (N,)."""
    grey = _grey(images)
    return (grey > threshold).reshape(len(grey), -1).mean(axis=1)


def digit_shape(images, threshold: int = 128) -> dict[str, np.ndarray]:
    """Two shape measures of white-on-black digits (pixels brighter than `threshold` are ink), each (N,):
    ``loops``, the number of background regions the ink encloses (4-connected regions not touching the border:
    an 8 has two, a 1 none); ``thickness``, the ink's area over its boundary pixels (ink with a 4-neighbour
    outside the ink), which grows with the stroke's width (a k×k block: k²/(4k − 4))."""
    ink = _grey(images) > threshold
    loops, thickness = np.zeros(len(ink), dtype=int), np.zeros(len(ink))
    for i, im in enumerate(ink):
        regions, n = ndimage.label(~im)                                          # background, 4-connected
        touching = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
        loops[i] = n - np.count_nonzero(touching)                                 # label 0 is ink, not a region
        boundary = im & ~ndimage.binary_erosion(im)
        thickness[i] = im.sum() / max(1, boundary.sum())
    return {"loops": loops, "thickness": thickness}


def image_statistics(images) -> dict:
    """Low-level statistics of uint8 (N, H, W, 3) images, in [0, 1] units: `colour`, the mean RGB (N, 3);
    `brightness`, the mean grey level (N,); `layout`, a 4×4 grey thumbnail (block means) minus its own mean (N, 16),
    i.e. where the image is light or dark, whatever its overall brightness. H and W must be multiples of 4."""
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] % 4 or x.shape[2] % 4:
        raise ValueError(f"images must be uint8 (N, H, W, 3) with H, W multiples of 4, got {x.dtype} {x.shape}")
    x = x.astype(np.float32) / 255
    grey = x.mean(axis=-1)
    n, h, w = grey.shape
    thumb = grey.reshape(n, 4, h // 4, 4, w // 4).mean(axis=(2, 4)).reshape(n, 16)
    return {"colour": x.mean(axis=(1, 2)), "brightness": grey.mean(axis=(1, 2)),
            "layout": thumb - thumb.mean(axis=1, keepdims=True)}


def statistic_gaps(images, queries, lists, seed: int = 0) -> dict:
    """How alike in low-level statistics each query is to its retrieved images, beside chance.

    `queries` (Q,) and `lists` (Q, k) index `images` (uint8 (N, H, W, 3)). For each statistic of `image_statistics`
    the distance between a query and each retrieved image (ℓ2 for colour, absolute difference for brightness, RMS
    over the 16 cells for layout), averaged over all Q·k pairs: `{stat: {"retrieved": ..., "random": ...}}`, with
    "random" the same average for k images drawn uniformly at random (seeded) for each query."""
    queries, lists = np.asarray(queries), np.asarray(lists)
    if lists.ndim != 2 or len(lists) != len(queries):
        raise ValueError(f"{len(queries)} queries but lists of shape {lists.shape}")
    randoms = np.random.default_rng(seed).integers(0, len(images), size=lists.shape)
    q = image_statistics(images[queries])
    out = {}
    for key, idx in (("retrieved", lists), ("random", randoms)):
        s = image_statistics(images[idx.ravel()])
        for stat, v in s.items():
            d = v.reshape(*idx.shape, *v.shape[1:]) - q[stat][:, None]
            gap = {"colour": lambda d: np.linalg.norm(d, axis=-1), "brightness": np.abs,
                   "layout": lambda d: np.sqrt((d ** 2).mean(axis=-1))}[stat](d)
            out.setdefault(stat, {})[key] = float(gap.mean())
    return out
