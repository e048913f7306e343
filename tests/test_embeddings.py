import numpy as np
import pytest
import torch

from scipy import sparse
from scipy.linalg import subspace_angles
from sklearn.manifold import SpectralEmbedding

from helpers import embeddings as EM
from helpers import evaluation as E
from helpers.vicreg import normalize, to_float


def test_random_cnn_features_are_seeded_and_leave_the_global_generator_alone():
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    state = torch.get_rng_state()
    a = EM.random_cnn_features(images, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.shape == (6, 1024)
    assert torch.equal(a, EM.random_cnn_features(images, seed=3))
    assert not torch.equal(a, EM.random_cnn_features(images, seed=4))


def test_random_cnn_features_are_bitwise_those_of_the_plain_forward():
    """They choose the kNN graphs, where rounding reorders near-tied neighbours: inference mode and small batches,
    but the same convolutions (NCHW, fp32) as a plain no_grad forward of all images at once."""
    images = np.random.default_rng(1).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = EM.RandomCNN()
    with torch.no_grad():
        plain = net.eval()(normalize(to_float(images, "cpu")))
    assert torch.equal(EM.random_cnn_features(images, seed=0, batch_size=40), plain)


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


def ring(n: int) -> sparse.csr_array:
    """The cycle graph on n nodes: i ~ i ± 1 (mod n)."""
    i = np.arange(n)
    a = sparse.csr_array((np.ones(n), (i, (i + 1) % n)), shape=(n, n))
    return a + a.T


def test_spectral_embedding_of_a_ring_is_its_fourier_modes():
    """A ring's normalised Laplacian is circulant, I − (shift + shift⁻¹)/2: eigenvalues 1 − cos(2πf/n), each
    f ≥ 1 twice, eigenvectors cos and sin(2πf·i/n). The bottom pairs must span exactly those (to 1e-9 rad)."""
    n = 60
    angle = 2 * np.pi * np.arange(n) / n
    y = EM.spectral_embedding(ring(n), n_components=6)
    assert y.shape == (n, 6)
    for f in (1, 2, 3):
        modes = np.c_[np.cos(f * angle), np.sin(f * angle)]
        assert subspace_angles(y[:, 2 * f - 2:2 * f], modes).max() < 1e-9
    assert (y[np.abs(y).argmax(axis=0), np.arange(6)] > 0).all()                  # signed: largest entry > 0
    with pytest.raises(ValueError, match="symmetric"):
        EM.spectral_embedding(sparse.triu(ring(n)), 2)
    isolated = ring(n).toarray()
    isolated[-1], isolated[:, -1] = 0, 0                                            # node n − 1 cut out
    with pytest.raises(ValueError, match="no neighbour"):
        EM.spectral_embedding(sparse.csr_array(isolated), 2)


def test_laplacian_eigenmaps_equal_scikit_learns_spectral_embedding():
    """The solver it replaced (scikit-learn's SpectralEmbedding: ARPACK shift-invert) on a small random kNN graph:
    the same graph, eigenvectors, scaling and signs, to float32 rounding."""
    x = np.random.default_rng(0).normal(size=(300, 5))
    ref = SpectralEmbedding(n_components=6, affinity="nearest_neighbors", n_neighbors=8,
                            random_state=0).fit_transform(x)
    got = EM.laplacian_eigenmaps(torch.tensor(x), n_components=6, n_neighbors=8)
    assert got.dtype == np.float32
    assert np.abs(got - ref).max() < 1e-6 * np.abs(ref).max()


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


def test_optimise_codes_is_bitwise_reproducible_whatever_the_threads():
    g = torch.Generator().manual_seed(1)
    neighbours = torch.randint(2000, (2000, 5), generator=g)      # repeated rows; 512 × 128 gradient entries:
    # over ATen's grain size, so several threads share the accumulation
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = EM.optimise_codes(neighbours, dim=128, steps=30, batch_size=512, seed=0)
        torch.set_num_threads(4)
        threaded = [EM.optimise_codes(neighbours, dim=128, steps=30, batch_size=512, seed=0) for _ in range(2)]
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(serial, codes) for codes in threaded)
