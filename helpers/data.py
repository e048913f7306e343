"""Data sets of the workbook: where each comes from, how it is parsed, checked and cached (downloads: `downloads`).

Layout under the data directory (``AML_DATA_DIR``, default ``data/``), shared with
``../shared/data/provision.py`` on machines without internet::

    alice_in_wonderland.txt
    cifar10.npz                      built once from cifar-10-python.tar.gz
    MNIST/raw/t10k-images-idx3-ubyte.gz, MNIST/raw/t10k-labels-idx1-ubyte.gz
    tiktoken/<sha1 of url>           GPT-2's BPE files, as tiktoken caches them
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import pickle
import re
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import tiktoken
import torch
import torch.nn.functional as F
from tiktoken_ext.openai_public import ENDOFTEXT, r50k_pat_str

from . import setup, storage
from .downloads import Remote, check_sums, fix_for, fetch, md5sum, verified
from .storage import CorruptFileError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


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
TIKTOKEN_GPT2 = tuple(Remote(f"tiktoken/{hashlib.sha1((_BPE + name).encode()).hexdigest()}", (_BPE + name,),
                             sha256=digest)
                      for name, digest in (
                          ("vocab.bpe", "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
                          ("encoder.json", "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783")))


# ------------------------------------------------------------------------------------------- Alice

def strip_gutenberg(text: str) -> str:
    """Remove Project Gutenberg's header and licence footer, when present; a text without them is returned as it is
    (so stripping twice changes nothing)."""
    start = re.search(r"\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG[^\n]*\n", text)
    if not start:
        return text
    end = re.search(r"\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG", text)
    return text[start.end():end.start() if end else None].strip() + "\n"


ALICE_MARKERS = ("CHAPTER I", "Down the Rabbit-Hole", "CHAPTER XII", "Alice's Evidence", "THE END")


def check_alice_text(text: str, where: str) -> None:
    """Raise `CorruptFileError` unless `text` is the whole book: 130,000–200,000 characters, and the first and
    last chapters' headings and ``THE END`` in order (Gutenberg revises the file, so no fixed checksum)."""
    positions = [text.find(marker) for marker in ALICE_MARKERS]
    if not 130_000 <= len(text) <= 200_000 or -1 in positions or positions != sorted(positions):
        lacking = [m for m, p in zip(ALICE_MARKERS, positions) if p == -1]
        raise CorruptFileError(f"{where} does not look like the whole of Alice in Wonderland ({len(text):,} "
                               f"characters{'; lacks ' + ', '.join(map(repr, lacking)) if lacking else ''})")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise CorruptFileError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None


def load_alice() -> str:
    """*Alice's Adventures in Wonderland* as one string (Gutenberg header and footer removed on every load, from a
    download or a local copy alike), verified by
    `check_alice_text` on every load (cached by size and time). A download that fails the check is deleted."""
    path = setup.data_dir() / ALICE.path
    if not path.exists():
        [raw] = fetch(Remote(ALICE.path + ".download", ALICE.urls))
        try:
            text = strip_gutenberg(_read_text(raw))
            check_alice_text(text, f"the download from {' or '.join(ALICE.urls)}")
        except CorruptFileError as err:
            raw.unlink(missing_ok=True)
            raise CorruptFileError(f"{err}; it was deleted, so the next run downloads it again") from None
        storage.atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        raw.unlink()

    def check(p: Path) -> None:
        try:
            check_alice_text(_read_text(p), str(p))
        except CorruptFileError as err:
            raise CorruptFileError(f"{err}. Fix: {fix_for(p)}") from None

    verified(path, check, "alice")
    return strip_gutenberg(_read_text(path))  # a local copy may still carry Gutenberg's header and licence


# ----------------------------------------------------------------------------------------- CIFAR-10

class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR-10's batches hold (dicts, lists, bytes, numbers and numpy arrays): any other global
    — the way a planted payload runs code — is refused."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
               ("numpy.core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to unpickle {module}.{name}: not part of a CIFAR-10 batch")
        return super().find_class(module, name)


def cifar10_from_tar(tar_path: str | Path, md5: str | None) -> dict[str, np.ndarray]:
    """Arrays of the official ``cifar-10-python.tar.gz``: pickled batches of (N, 3072) uint8 rows.

    The archive's md5 is checked (``CIFAR10_TAR.md5`` for the official file; None skips it) *before* anything is
    unpickled, and the batches are unpickled by `_CifarUnpickler`, which refuses everything but arrays and plain
    data."""
    tar_path = Path(tar_path)
    fix = f"delete {tar_path} and run again to download it"
    if md5 is not None and (got := md5sum(tar_path)) != md5:
        raise CorruptFileError(f"{tar_path} is not the official CIFAR-10 archive (md5 {got}, expected {md5}); "
                               f"nothing was unpickled. Fix: {fix}")
    splits = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    batches = {}
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if name in splits["train"] or name in splits["test"]:
                    batches[name] = _CifarUnpickler(tar.extractfile(member), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise CorruptFileError(f"{tar_path}: {err}. Fix: {fix}") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise CorruptFileError(f"{tar_path} is damaged ({type(err).__name__}: {err}). Fix: {fix}") from None
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


CIFAR10_ARRAYS = {"x_train": (np.uint8, (32, 32, 3)), "y_train": (np.int64, ()), "x_test": (np.uint8, (32, 32, 3)),
                  "y_test": (np.int64, ())}


def check_cifar10(arrays: dict[str, np.ndarray], where: str) -> None:
    """Raise `CorruptFileError` unless `arrays` has CIFAR-10's keys, dtypes, image shape, matching lengths, labels
    0–9 and the ten class names."""
    problems = [f"no {k!r}" for k in (*CIFAR10_ARRAYS, "classes") if k not in arrays]
    for key, (dtype, shape) in CIFAR10_ARRAYS.items():
        if key in arrays and (arrays[key].dtype != dtype or arrays[key].shape[1:] != shape):
            problems.append(f"{key} is {arrays[key].dtype} {arrays[key].shape}, expected {np.dtype(dtype)} "
                            f"(N, {', '.join(map(str, shape))})".replace(", )", ")"))
    if not problems:
        for split in ("train", "test"):
            x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
            if len(x) != len(y) or not len(y) or y.min() < 0 or y.max() > 9:
                problems.append(f"{split}: {len(x)} images, {len(y)} labels in {y.min() if len(y) else '-'}.."
                                f"{y.max() if len(y) else '-'} (expected equal counts and labels 0–9)")
        if [str(c) for c in arrays["classes"]] != list(CIFAR10_CLASSES):
            problems.append(f"classes {list(arrays['classes'])}")
    if problems:
        raise CorruptFileError(f"{where} is not CIFAR-10 as the workbook stores it: {'; '.join(problems)}")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise CorruptFileError(f"{path} is damaged ({type(err).__name__}: {err}). Fix: {fix_for(path)}") from None


def load_cifar10() -> dict[str, np.ndarray]:
    """CIFAR-10 as uint8 (N, 32, 32, 3) images and int64 labels: x_train, y_train, x_test, y_test, classes.

    Reads ``cifar10.npz`` (never with pickle) and checks its keys, shapes and labels on every load; when it is
    absent, builds it once from the official tar.gz (downloaded and md5-checked when needed).
    """
    path = setup.data_dir() / "cifar10.npz"
    if not path.exists():
        [tar_path] = fetch(CIFAR10_TAR)
        arrays = cifar10_from_tar(tar_path, CIFAR10_TAR.md5)
        check_cifar10(arrays, str(tar_path))

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
                np.savez(f, **arrays)

        storage.atomic_write(path, write)
    arrays = _read_npz(path)
    try:
        check_cifar10(arrays, str(path))
    except CorruptFileError as err:
        raise CorruptFileError(f"{err}. Fix: {fix_for(path)}") from None
    return arrays


# -------------------------------------------------------------------------------------------- MNIST

def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file (gzip or not): magic 0x0000 08 NDIM, big-endian dimensions, uint8 data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise CorruptFileError(f"{path} is damaged ({type(err).__name__}: {err}). Fix: {fix_for(Path(path))}") \
            from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise CorruptFileError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise CorruptFileError(f"{path} is truncated inside its header")
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise CorruptFileError(f"{path}: header says {tuple(dims)} but holds {data.size} bytes")
    return data.reshape(tuple(dims))


def load_mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test set: uint8 images (10000, 28, 28) and int64 labels (10000,); both files md5-checked on every
    load (cached by size and time)."""
    images_path, labels_path = fetch(MNIST_TEST_IMAGES, MNIST_TEST_LABELS)
    for path, remote in ((images_path, MNIST_TEST_IMAGES), (labels_path, MNIST_TEST_LABELS)):
        verified(path, lambda p, r=remote: _check_file(p, r), "md5")
    images, labels = read_idx(images_path), read_idx(labels_path).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"MNIST files disagree: images {images.shape}, labels {labels.shape}")
    return images, labels


def _check_file(path: Path, remote: Remote) -> None:
    try:
        check_sums(path, remote, str(path))
    except CorruptFileError as err:
        raise CorruptFileError(f"{err}. Fix: {fix_for(path)}") from None


# ----------------------------------------------------------------------------------------- tiktoken

def _byte_alphabet() -> dict[str, int]:
    """GPT-2's printable stand-ins for bytes (Radford et al. 2019, ``bytes_to_unicode``): a printable, non-space byte
    stands for itself; every other byte b, in order, for the character 256 + its index among them."""
    kept = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    others = [b for b in range(256) if b not in kept]
    return {**{chr(b): b for b in kept}, **{chr(256 + i): b for i, b in enumerate(others)}}


@functools.cache
def _gpt2_from_bytes(encoder_json: bytes) -> tiktoken.Encoding:
    """The GPT-2 encoding built from ``encoder.json``'s bytes: its token ids are tiktoken's merge ranks."""
    alphabet = _byte_alphabet()
    vocab = json.loads(encoder_json)
    ranks = {bytes(alphabet[ch] for ch in token): rank for token, rank in vocab.items() if token != ENDOFTEXT}
    return tiktoken.Encoding("gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={ENDOFTEXT: vocab[ENDOFTEXT]}, explicit_n_vocab=len(vocab))


def gpt2_encoding() -> tiktoken.Encoding:
    """tiktoken's GPT-2 byte-pair encoding, built from its files' bytes: they are fetched by our own downloader
    (bounded wait, sha256, atomic) into ``<data>/tiktoken``, read once, sha256-checked on the bytes read, and the
    encoding is made from those bytes, so tiktoken never opens a file or the network itself."""
    paths = fetch(*TIKTOKEN_GPT2)
    blobs = []
    for path, remote in zip(paths, TIKTOKEN_GPT2):
        blob = path.read_bytes()
        if (got := hashlib.sha256(blob).hexdigest()) != remote.sha256:
            raise CorruptFileError(f"checksum mismatch for {path}: sha256 {got}, expected {remote.sha256}. "
                                   f"Fix: {fix_for(path)}")
        blobs.append(blob)
    return _gpt2_from_bytes(blobs[1])  # encoder.json; vocab.bpe's merges are implied by its ranks


def mnist_as_cifar(images: np.ndarray) -> np.ndarray:
    """MNIST digits (N, 28, 28) uint8 as CIFAR-shaped images (N, 32, 32, 3) uint8: bilinear resize to 32×32 and
    the grey channel replicated three times. The CIFAR normalisation is applied downstream, as for CIFAR."""
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"MNIST images must be uint8 (N, 28, 28), got {x.dtype} {x.shape}")
    t = torch.tensor(x, dtype=torch.float32)[:, None]            # a copy: read-only input is fine  (N, 1, 28, 28)
    t = F.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False)
    t = t.round().clamp(0, 255).to(torch.uint8)[:, 0]                                # (N, 32, 32)
    return np.repeat(t.numpy()[..., None], 3, axis=-1)
