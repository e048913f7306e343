"""Notebook 03's inference results, the code before (commit 7cb0949) against now, on the real data, side by side in one
run: the shipped VICReg encoder's features of the 50,000 training and 10,000 test images (seconds, largest difference)
and the notebook's linear probe on each; the Laplacian eigenmaps of the notebook's 10,000 images (seconds, largest
difference, the notebook's 90/10 split probe).

Run: .venv/bin/python benchmarks/vicreg_inference_check.py   (about 3 minutes on 2 cores; needs data/ and the weights)
"""
import time

import numpy as np
import torch
from sklearn.manifold import SpectralEmbedding

from bench_eigenmaps import N_COMPONENTS, N_NEIGHBORS, SEED, notebook_graph
from bench_vicreg import features_before
from helpers import embeddings as EM
from helpers import evaluation as E
from helpers import setup
from helpers import vicreg_models as M
from helpers import vicreg_training as VT
from helpers.data import load_cifar10


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main():
    s = setup.settings("03_vicreg")
    print(f"{setup.cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"profile {setup.profile()}")
    cifar = load_cifar10()
    encoder, _ = M.load_weights(M.weights_path("vicreg"), M.model_spec("vicreg", s, len(cifar["x_train"])))
    y_train, y_test = torch.as_tensor(cifar["y_train"]), torch.as_tensor(cifar["y_test"])
    feats, seconds = {}, {}
    for name, extract in (("before", lambda x: features_before(encoder, x, "cpu")),
                          ("now", lambda x: VT.features(encoder, x, "cpu"))):
        (train, test), seconds[name] = timed(lambda: (extract(cifar["x_train"]), extract(cifar["x_test"])))
        feats[name] = train, test
    n = len(cifar["x_train"]) + len(cifar["x_test"])
    diff = {split: (feats["now"][i] - feats["before"][i]).abs().max().item()
            for i, split in enumerate(("train", "test"))}
    print(f"VICReg features of {n:,} images: before {seconds['before']:.1f} s ({n / seconds['before']:.0f} images/s), "
          f"now {seconds['now']:.1f} s ({n / seconds['now']:.0f} images/s), {seconds['before'] / seconds['now']:.2f}x; "
          f"max |diff| train {diff['train']:.1e}, test {diff['test']:.1e} (largest |feature| "
          f"{feats['before'][1].abs().max().item():.1f})")
    for name, (train, test) in feats.items():
        acc = E.linear_probe(train, y_train, test, y_test, epochs=s.probe_epochs, seed=SEED)["test_acc"]
        print(f"linear probe ({s.probe_epochs} epochs), features {name}: {acc:.2%}")

    cnn, labels = notebook_graph()
    old, t_old = timed(lambda: SpectralEmbedding(n_components=N_COMPONENTS, affinity="nearest_neighbors",
                                                 n_neighbors=N_NEIGHBORS, random_state=SEED).fit_transform(
        np.asarray(cnn, dtype=np.float64)).astype(np.float32))
    new, t_new = timed(lambda: EM.laplacian_eigenmaps(cnn, N_COMPONENTS, N_NEIGHBORS, SEED))
    probe = {name: E.split_probe(y, labels, 0.1, seed=SEED, epochs=s.probe_epochs)["test_acc"]
             for name, y in (("before", old), ("now", new))}
    print(f"Laplacian eigenmaps of {len(cnn):,} images (graph included): before (SpectralEmbedding) {t_old:.1f} s, "
          f"now {t_new:.1f} s, {t_old / t_new:.0f}x; max |diff| {np.abs(new - old).max():.1e} (largest "
          f"{np.abs(old).max():.3f}), {int((new != old).sum())} of {old.size:,} float32 entries differ; 90/10 probe "
          f"before {probe['before']:.2%}, now {probe['now']:.2%}")


if __name__ == "__main__":
    main()
