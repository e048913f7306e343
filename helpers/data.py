"""Data sets of the workbook: download (checksummed, atomic), parse, cache.

Layout under the data directory (``AML_DATA_DIR``, default ``data/``), shared with
``../shared/data/provision.py`` on machines without internet::

    alice_in_wonderland.txt
    cifar10.npz                      built once from cifar-10-python.tar.gz
    MNIST/raw/t10k-images-idx3-ubyte.gz, MNIST/raw/t10k-labels-idx1-ubyte.gz
    tiktoken/<sha1 of url>           GPT-2's BPE files, as tiktoken caches them
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import re
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import results, setup

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class Remote:
    """A file of the data directory and where it comes from."""
    path: str                 # relative to the data directory
    urls: tuple[str, ...]     # tried in order
    md5: str | None = None    # None: the content is checked by its parser instead


ALICE = Remote("alice_in_wonderland.txt", (
    "https://www.gutenberg.org/cache/epub/11/pg11.txt",
    "https://www.gutenberg.org/files/11/11-0.txt",
))
CIFAR10_TAR = Remote("cifar-10-python.tar.gz", (
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",), md5="c58f30108f718f92721af3b95e74349a")
_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/",
                  "http://yann.lecun.com/exdb/mnist/")
MNIST_TEST_IMAGES = Remote("MNIST/raw/t10k-images-idx3-ubyte.gz",
                           tuple(m + "t10k-images-idx3-ubyte.gz" for m in _MNIST_MIRRORS),
                           md5="9fb629c4189551a2d022fa330f9573f3")
MNIST_TEST_LABELS = Remote("MNIST/raw/t10k-labels-idx1-ubyte.gz",
                           tuple(m + "t10k-labels-idx1-ubyte.gz" for m in _MNIST_MIRRORS),
                           md5="ec29112dd5afa0611ce80d1b7f02629c")
_BPE = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
TIKTOKEN_GPT2 = tuple(Remote(f"tiktoken/{hashlib.sha1((_BPE + name).encode()).hexdigest()}", (_BPE + name,))
                      for name in ("vocab.bpe", "encoder.json"))


class DataUnavailableError(RuntimeError):
    """The data is neither in the data directory nor downloadable."""


def _missing_message(missing: list[Remote], errors: list[str]) -> str:
    root = setup.data_dir()
    lines = [f"data not found in {root} and could not be downloaded:"]
    for remote in missing:
        lines.append(f"  - {remote.path}  (from {' or '.join(remote.urls)})")
    if errors:
        lines.append("download errors: " + "; ".join(errors))
    lines.append("Fix: connect to the internet, or provision an offline copy with "
                 "`python ../shared/data/provision.py data`, or point AML_DATA_DIR at a folder that holds these files.")
    return "\n".join(lines)


def md5sum(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: str | Path, md5: str | None = None, timeout: float = 30.0) -> Path:
    """Download `url` to `dest` atomically; with `md5`, a mismatch raises ValueError and leaves nothing."""
    dest = Path(dest)

    def write(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        if md5 is not None and (got := md5sum(tmp)) != md5:
            raise ValueError(f"checksum mismatch for {url}: md5 {got}, expected {md5}; the download was discarded")

    return results.atomic_write(dest, write)


def fetch(*remotes: Remote) -> list[Path]:
    """Local paths of `remotes`, downloading the missing ones; one clear error if any stays missing."""
    root = setup.data_dir()
    missing, errors = [], []
    for remote in remotes:
        path = root / remote.path
        if path.exists():
            continue
        for url in remote.urls:
            try:
                download(url, path, remote.md5)
                break
            except ValueError:
                raise
            except OSError as err:  # no network, host down, 404...
                errors.append(f"{url}: {err}")
        else:
            missing.append(remote)
    if missing:
        raise DataUnavailableError(_missing_message(missing, errors))
    return [root / remote.path for remote in remotes]


# ------------------------------------------------------------------------------------------- Alice

def strip_gutenberg(text: str) -> str:
    """Remove Project Gutenberg's header and licence footer, when present."""
    start = re.search(r"\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG[^\n]*\n", text)
    end = re.search(r"\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG", text)
    if start:
        text = text[start.end():end.start() if end else None]
    return text.strip() + "\n"


def load_alice() -> str:
    """*Alice's Adventures in Wonderland* as one string (Gutenberg header and footer removed)."""
    path = setup.data_dir() / ALICE.path
    if not path.exists():
        [raw] = fetch(Remote(ALICE.path + ".download", ALICE.urls))
        text = strip_gutenberg(raw.read_text(encoding="utf-8-sig"))
        if "Alice" not in text or len(text) < 100_000:
            raise ValueError(f"{raw} does not look like Alice in Wonderland ({len(text)} characters)")
        results.atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        raw.unlink()
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ValueError(f"{path} is empty; delete it so that it is downloaded again")
    return text


# ----------------------------------------------------------------------------------------- CIFAR-10

def cifar10_from_tar(tar_path: str | Path) -> dict[str, np.ndarray]:
    """Arrays of the official ``cifar-10-python.tar.gz``: pickled batches of (N, 3072) uint8 rows."""
    splits = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    batches = {}
    with tarfile.open(tar_path, "r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if name in splits["train"] or name in splits["test"]:
                batches[name] = pickle.load(tar.extractfile(member), encoding="bytes")
    arrays = {}
    for split, names in splits.items():
        missing = [n for n in names if n not in batches]
        if missing:
            raise ValueError(f"{tar_path} lacks the CIFAR-10 batches {missing}")
        x = np.concatenate([batches[n][b"data"] for n in names]).astype(np.uint8)
        arrays[f"x_{split}"] = x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()  # (N, 32, 32, 3)
        arrays[f"y_{split}"] = np.concatenate([batches[n][b"labels"] for n in names]).astype(np.int64)
    arrays["classes"] = np.array(CIFAR10_CLASSES)
    return arrays


def load_cifar10() -> dict[str, np.ndarray]:
    """CIFAR-10 as uint8 (N, 32, 32, 3) images and int64 labels: x_train, y_train, x_test, y_test, classes.

    Reads ``cifar10.npz``; when it is absent, builds it once from the official tar.gz (downloaded and
    md5-checked when needed).
    """
    path = setup.data_dir() / "cifar10.npz"
    if not path.exists():
        [tar_path] = fetch(CIFAR10_TAR)
        arrays = cifar10_from_tar(tar_path)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
                np.savez(f, **arrays)

        results.atomic_write(path, write)
    with np.load(path) as npz:
        return {key: npz[key] for key in npz.files}


# -------------------------------------------------------------------------------------------- MNIST

def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file (gzip or not): magic 0x0000 08 NDIM, big-endian dimensions, uint8 data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {tuple(dims)} but holds {data.size} bytes")
    return data.reshape(tuple(dims))


def load_mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test set: uint8 images (10000, 28, 28) and int64 labels (10000,)."""
    images_path, labels_path = fetch(MNIST_TEST_IMAGES, MNIST_TEST_LABELS)
    images, labels = read_idx(images_path), read_idx(labels_path).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"MNIST files disagree: images {images.shape}, labels {labels.shape}")
    return images, labels


# ----------------------------------------------------------------------------------------- tiktoken

def gpt2_encoding():
    """tiktoken's GPT-2 byte-pair encoding, cached under ``<data>/tiktoken`` (works offline once there)."""
    import tiktoken

    cache = setup.data_dir() / "tiktoken"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as err:  # tiktoken raises requests' errors when offline and the cache is empty
        missing = [r for r in TIKTOKEN_GPT2 if not (setup.data_dir() / r.path).exists()]
        if not missing:
            raise
        raise DataUnavailableError(_missing_message(missing, [str(err)])) from err


def mnist_as_cifar(images: np.ndarray) -> np.ndarray:
    """MNIST digits (N, 28, 28) uint8 as CIFAR-shaped images (N, 32, 32, 3) uint8: bilinear resize to 32×32 and
    the grey channel replicated three times. The CIFAR normalisation is applied downstream, as for CIFAR."""
    import torch
    import torch.nn.functional as F

    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"MNIST images must be uint8 (N, 28, 28), got {x.dtype} {x.shape}")
    t = torch.from_numpy(x).float()[:, None]                                         # (N, 1, 28, 28)
    t = F.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False)
    t = t.round().clamp(0, 255).to(torch.uint8)[:, 0]                                # (N, 32, 32)
    return np.repeat(t.numpy()[..., None], 3, axis=-1)
