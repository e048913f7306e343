import numpy as np
import pytest
import torch

from helpers import embeddings as EM
from helpers import evaluation as E


def test_random_cnn_features_are_seeded_and_leave_the_global_generator_alone():
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    state = torch.get_rng_state()
    a = EM.random_cnn_features(images, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.shape == (6, 1024)
    assert torch.equal(a, EM.random_cnn_features(images, seed=3))
    assert not torch.equal(a, EM.random_cnn_features(images, seed=4))


def test_laplacian_eigenmaps_unroll_a_circle():
    """The 2 bottom non-trivial eigenvectors of a ring graph are cos and sin of the angle: the circle comes back."""
    n = 120
    angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 6)))[0]
    x = np.c_[np.cos(angle), np.sin(angle), np.zeros((n, 4))] @ rotation
    y = EM.laplacian_eigenmaps(torch.tensor(x), n_components=2, n_neighbors=4)
    radius = np.linalg.norm(y - y.mean(0), axis=1)
    assert radius.std() / radius.mean() < 0.05
    turn = np.unwrap(np.arctan2(*(y - y.mean(0)).T[::-1]))
    steps = np.diff(turn)
    assert (np.all(steps >= 0) or np.all(steps <= 0)) and abs(turn[-1] - turn[0]) > 1.9 * np.pi  # one turn, in order
    with pytest.raises(ValueError, match="n_components"):
        EM.laplacian_eigenmaps(torch.tensor(x[:5]), n_components=8)


def test_optimised_codes_learn_groups_from_neighbours_but_not_from_themselves():
    n = 200
    group = torch.arange(n) // 100
    g = torch.Generator().manual_seed(0)
    neighbours = torch.stack([(group * 100 + torch.randint(0, 100, (n,), generator=g)) for _ in range(5)], 1)
    codes = EM.optimise_codes(neighbours, dim=8, steps=400, batch_size=64, seed=0)
    assert codes.shape == (n, 8)
    assert E.split_probe(codes, group, 0.25, epochs=50)["test_acc"] > 0.95
    # without the fix every image is paired with itself (all its views share one code): nothing is learnt
    itself = torch.arange(n)[:, None]
    lost = EM.optimise_codes(itself, dim=8, steps=400, batch_size=64, seed=0)
    assert E.split_probe(lost, group, 0.25, epochs=50)["test_acc"] < 0.8
    with pytest.raises(ValueError, match="batch_size"):
        EM.optimise_codes(neighbours, batch_size=1)
