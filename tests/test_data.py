import gzip
import io
import pickle
import tarfile

import numpy as np
import pytest

from helpers import data, setup

PROVISIONED = setup.repo_root() / "data"


def make_cifar_tar(path, n=4, seed=0):
    """A tar.gz in the official layout: pickled dicts of (n, 3072) uint8 rows and labels."""
    rng = np.random.default_rng(seed)
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                     b"labels": list(rng.integers(0, 10, n))}
            batches[name] = batch
            raw = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return batches


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_cifar_parser_on_official_format(tmp_path, data_dir):
    batches = make_cifar_tar(data_dir.parent / "c.tar.gz")
    arrays = data.cifar10_from_tar(data_dir.parent / "c.tar.gz")
    assert arrays["x_train"].shape == (20, 32, 32, 3) and arrays["x_test"].shape == (4, 32, 32, 3)
    assert arrays["x_train"].dtype == np.uint8 and arrays["y_train"].dtype == np.int64
    row = batches["data_batch_2"][b"data"][1]  # image 5 of train: channel-major in the file
    assert np.array_equal(arrays["x_train"][5][..., 0], row[:1024].reshape(32, 32))
    assert np.array_equal(arrays["x_train"][5][..., 2], row[2048:].reshape(32, 32))
    assert arrays["y_test"].tolist() == batches["test_batch"][b"labels"]
    assert list(arrays["classes"]) == list(data.CIFAR10_CLASSES)


def test_load_cifar10_builds_npz_once(data_dir):
    data_dir.mkdir()
    make_cifar_tar(data_dir / "cifar-10-python.tar.gz")
    first = data.load_cifar10()
    assert (data_dir / "cifar10.npz").exists()
    (data_dir / "cifar-10-python.tar.gz").unlink()  # the npz alone is enough from now on
    second = data.load_cifar10()
    assert all(np.array_equal(first[k], second[k]) for k in first)


def test_idx_parser(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    write_idx(tmp_path / "i.gz", images)
    write_idx(tmp_path / "l.gz", np.arange(5))
    assert np.array_equal(data.read_idx(tmp_path / "i.gz"), images)
    assert data.read_idx(tmp_path / "l.gz").tolist() == [0, 1, 2, 3, 4]
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX"):
        data.read_idx(tmp_path / "bad")


def test_corrupt_download_is_rejected_and_leaves_nothing(tmp_path, data_dir, monkeypatch):
    fake = tmp_path / "corrupt.tar.gz"
    fake.write_bytes(b"not the real file")
    monkeypatch.setattr(data, "CIFAR10_TAR", data.Remote("cifar-10-python.tar.gz", (fake.as_uri(),),
                                                         md5=data.CIFAR10_TAR.md5))
    with pytest.raises(ValueError, match="checksum mismatch"):
        data.load_cifar10()
    assert not data_dir.exists() or not any(data_dir.rglob("*"))


def test_good_download_is_kept(tmp_path, data_dir):
    src = tmp_path / "file.bin"
    src.write_bytes(b"payload")
    remote = data.Remote("sub/file.bin", ("file:///no/such/mirror", src.as_uri()), md5=data.md5sum(src))
    [path] = data.fetch(remote)
    assert path == data_dir / "sub" / "file.bin" and path.read_bytes() == b"payload"


def test_missing_data_gives_one_clear_error(data_dir, monkeypatch):
    monkeypatch.setattr(data, "MNIST_TEST_IMAGES", data.Remote(data.MNIST_TEST_IMAGES.path, ("file:///no/such/a",)))
    monkeypatch.setattr(data, "MNIST_TEST_LABELS", data.Remote(data.MNIST_TEST_LABELS.path, ("file:///no/such/b",)))
    with pytest.raises(data.DataUnavailableError) as err:
        data.load_mnist_test()
    message = str(err.value)
    for needle in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "file:///no/such/a",
                   "AML_DATA_DIR", "provision.py", str(data_dir)):
        assert needle in message


def test_strip_gutenberg():
    text = "header\n*** START OF THE PROJECT GUTENBERG EBOOK 11 ***\nAlice was here.\n*** END OF THE PROJECT GUTENBERG EBOOK 11 ***\nlicence"
    assert data.strip_gutenberg(text) == "Alice was here.\n"
    assert data.strip_gutenberg("plain text\n") == "plain text\n"


needs_provisioned = pytest.mark.skipif(not (PROVISIONED / "cifar10.npz").exists(),
                                       reason="run `python ../shared/data/provision.py data` first")


@needs_provisioned
def test_provisioned_files(monkeypatch):
    monkeypatch.setenv("AML_DATA_DIR", str(PROVISIONED))
    cifar = data.load_cifar10()
    assert cifar["x_train"].shape == (50000, 32, 32, 3) and cifar["x_test"].shape == (10000, 32, 32, 3)
    assert np.bincount(cifar["y_test"]).tolist() == [1000] * 10
    images, labels = data.load_mnist_test()
    assert images.shape == (10000, 28, 28) and np.bincount(labels).sum() == 10000
    assert data.md5sum(PROVISIONED / data.MNIST_TEST_IMAGES.path) == data.MNIST_TEST_IMAGES.md5
    text = data.load_alice()
    assert text.count("CHAPTER") >= 12 and "Alice" in text
    enc = data.gpt2_encoding()
    assert enc.encode("Hello world") == [15496, 995] and enc.n_vocab == 50257


def test_mnist_as_cifar_shape_channels_and_normalisation():
    import torch

    from helpers.vicreg import CIFAR_MEAN, CIFAR_STD, normalize
    from helpers.vicreg_training import to_float

    digits = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    out = data.mnist_as_cifar(digits)
    assert out.shape == (5, 32, 32, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    flat = data.mnist_as_cifar(np.full((2, 28, 28), 200, dtype=np.uint8))
    assert (flat == 200).all()  # resizing keeps a constant image constant
    x = normalize(to_float(flat, "cpu"))
    for c in range(3):
        assert torch.allclose(x[:, c], torch.full((2, 32, 32), (200 / 255 - CIFAR_MEAN[c]) / CIFAR_STD[c]))
    with pytest.raises(ValueError, match="28, 28"):
        data.mnist_as_cifar(np.zeros((2, 32, 32), dtype=np.uint8))
