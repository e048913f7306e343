"""Seconds of the Laplacian-eigenmaps eigen-solvers on notebook 03's own graph, side by side in one run: the 10-NN graph
of the untrained CNN's 1024-d features of the notebook's 10,000 training images (its seed, its draw), 64 components.

Each solver's embedding is compared with the one it replaced (scikit-learn's default: ARPACK in shift-invert mode
around λ = 0, which factorises the Laplacian first): the largest principal angle between the two 64-d subspaces, the
largest entry difference (same signs and scaling by construction) and the notebook's 90/10 split probe (30 epochs).
Each solver runs `--rounds` times, the solvers taking turns within a round; the fastest run counts.

Run: .venv/bin/python benchmarks/bench_eigenmaps.py [--rounds 2] [--dense]   (--dense adds LAPACK: ~1 GB, minutes)
"""
import argparse
import time

import numpy as np
import scipy.linalg
import torch
from sklearn.manifold import spectral_embedding as sklearn_spectral_embedding

from helpers import embeddings as EM
from helpers import evaluation as E
from helpers.data import load_cifar10
from helpers.setup import SETTINGS, cpu_name

N_COMPONENTS, N_NEIGHBORS, SEED = 64, 10, 0


def notebook_graph():
    """The notebook's Laplacian inputs: its draw of 10,000 training images (after the t-SNE draw of the test set,
    from the same generator), their untrained-CNN features and labels."""
    s = SETTINGS["03_vicreg"]["default"]
    cifar = load_cifar10()
    rng = np.random.default_rng(SEED)
    rng.choice(len(cifar["x_test"]), min(s["tsne_n"], len(cifar["x_test"])), replace=False)  # the t-SNE draw
    idx = np.sort(rng.choice(len(cifar["x_train"]), s["laplacian_n"], replace=False))
    return EM.random_cnn_features(cifar["x_train"][idx], seed=SEED), torch.as_tensor(cifar["y_train"][idx])


def dense_top(affinity, k: int) -> np.ndarray:
    """The same embedding from LAPACK's dense symmetric solver (syevr, the top k eigenpairs of D^-½ W D^-½ only)."""
    w = affinity.toarray()
    np.fill_diagonal(w, 0)
    d = w.sum(1)
    s = w / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]
    _, vectors = scipy.linalg.eigh(s, subset_by_index=[len(s) - k - 1, len(s) - 1], driver="evr")
    y = vectors[:, ::-1] / np.sqrt(d)[:, None]
    y *= np.sign(y[np.abs(y).argmax(axis=0), np.arange(y.shape[1])])
    return y[:, 1:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="timed runs of each solver (the fastest counts)")
    parser.add_argument("--dense", action="store_true", help="add the dense LAPACK solver (~1 GB, minutes)")
    args = parser.parse_args()
    print(f"{cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    features, labels = notebook_graph()
    t0 = time.perf_counter()
    affinity = EM.knn_affinity(features, N_NEIGHBORS)
    graph_seconds = time.perf_counter() - t0
    print(f"graph: {affinity.shape[0]:,} points, {affinity.nnz:,} entries; kNN affinity {graph_seconds:.1f} s "
          "(scikit-learn's kneighbors_graph, float64; before and now alike)")
    solvers = [
        ("before: scikit-learn default (ARPACK shift-invert, tol 0)",
         lambda: sklearn_spectral_embedding(affinity, n_components=N_COMPONENTS, random_state=SEED)),
        ("now: Lanczos on D^-1/2 W D^-1/2 (ARPACK 'LA', tol 0)",
         lambda: EM.spectral_embedding(affinity, N_COMPONENTS, SEED)),
        ("Lanczos, tol 1e-6", lambda: EM.spectral_embedding(affinity, N_COMPONENTS, SEED, tol=1e-6)),
        ("scikit-learn LOBPCG (no preconditioner, X0 = [sqrt(d), random])",
         lambda: sklearn_spectral_embedding(affinity, n_components=N_COMPONENTS, random_state=SEED,
                                            eigen_solver="lobpcg"))]
    if args.dense:
        solvers.append(("dense LAPACK syevr, top 65 only", lambda: dense_top(affinity, N_COMPONENTS)))
    seconds, result = {}, {}
    for _ in range(args.rounds):
        for label, solve in solvers:
            t0 = time.perf_counter()
            result[label] = solve()
            seconds[label] = min(seconds.get(label, float("inf")), time.perf_counter() - t0)
    print(f"{'solver':66s} {'seconds':>7} {'speed-up':>8} {'max angle':>10} {'max |diff|':>10} {'probe':>7}")
    before = solvers[0][0]
    for label, y in result.items():
        angle = np.degrees(scipy.linalg.subspace_angles(result[before], y).max())
        probe = E.split_probe(torch.as_tensor(y, dtype=torch.float32), labels, 0.1, seed=SEED, epochs=30)["test_acc"]
        print(f"{label:66s} {seconds[label]:7.1f} {seconds[before] / seconds[label]:7.1f}x {angle:9.1e}° "
              f"{np.abs(y - result[before]).max():10.1e} {probe:7.2%}")


if __name__ == "__main__":
    main()
