import gzip
import io
import os
import pickle
import socket
import tarfile
import time
import warnings

import numpy as np
import pytest
import tiktoken

from helpers import data, downloads, setup
from helpers.vicreg import to_float

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
    arrays = data.cifar10_from_tar(data_dir.parent / "c.tar.gz", md5=None)
    assert arrays["x_train"].shape == (20, 32, 32, 3) and arrays["x_test"].shape == (4, 32, 32, 3)
    assert arrays["x_train"].dtype == np.uint8 and arrays["y_train"].dtype == np.int64
    row = batches["data_batch_2"][b"data"][1]  # image 5 of train: channel-major in the file
    assert np.array_equal(arrays["x_train"][5][..., 0], row[:1024].reshape(32, 32))
    assert np.array_equal(arrays["x_train"][5][..., 2], row[2048:].reshape(32, 32))
    assert arrays["y_test"].tolist() == batches["test_batch"][b"labels"]
    assert list(arrays["classes"]) == list(data.CIFAR10_CLASSES)


def test_load_cifar10_builds_npz_once(data_dir, monkeypatch):
    data_dir.mkdir(exist_ok=True)
    make_cifar_tar(data_dir / "cifar-10-python.tar.gz")
    monkeypatch.setattr(data, "CIFAR10_TAR", data.Remote("cifar-10-python.tar.gz", data.CIFAR10_TAR.urls,
                                                         md5=data.md5sum(data_dir / "cifar-10-python.tar.gz")))
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
    with pytest.raises(downloads.DataUnavailableError) as err:
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

    digits = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    out = data.mnist_as_cifar(digits)
    assert out.shape == (5, 32, 32, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    flat = data.mnist_as_cifar(np.full((2, 28, 28), 200, dtype=np.uint8))
    assert (flat == 200).all()  # resizing keeps a constant image constant
    read_only = np.frombuffer(digits.tobytes(), dtype=np.uint8).reshape(digits.shape)   # as read_idx returns them
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                  # no "array is not writable" warning
        assert (data.mnist_as_cifar(read_only) == out).all()
    x = normalize(to_float(flat, "cpu"))
    for c in range(3):
        assert torch.allclose(x[:, c], torch.full((2, 32, 32), (200 / 255 - CIFAR_MEAN[c]) / CIFAR_STD[c]))
    with pytest.raises(ValueError, match="28, 28"):
        data.mnist_as_cifar(np.zeros((2, 32, 32), dtype=np.uint8))


# ------------------------------------------------------------------ hostile files, bad networks (issue 11)



def add_to_tar(tar, name, raw):
    info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
    info.size = len(raw)
    tar.addfile(info, io.BytesIO(raw))


def test_cifar_archive_with_a_payload_is_refused_before_it_runs(planted, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        add_to_tar(tar, "data_batch_1", pickle.dumps({b"data": planted(marker)}))
    with pytest.raises(data.CorruptFileError, match="md5.*nothing was unpickled"):
        data.cifar10_from_tar(evil, md5=data.CIFAR10_TAR.md5)          # the md5 is checked first
    with pytest.raises(data.CorruptFileError, match="refused to unpickle posix.system|refused to unpickle nt.system"):
        data.cifar10_from_tar(evil, md5=None)                           # and the unpickler refuses it anyway
    assert not marker.exists()


def silent_server():
    """A server on 127.0.0.1 that accepts connections (the kernel completes them) and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    return srv, f"http://127.0.0.1:{srv.getsockname()[1]}/"


def test_a_silent_server_costs_at_most_the_download_budget(data_dir, monkeypatch):
    srv, url = silent_server()
    monkeypatch.setattr(downloads, "CONNECT_TIMEOUT_S", 1.0)
    monkeypatch.setattr(downloads, "DOWNLOAD_BUDGET_S", 2.5)
    monkeypatch.setattr(data, "MNIST_TEST_IMAGES", data.Remote(data.MNIST_TEST_IMAGES.path, (url + "a", url + "b")))
    monkeypatch.setattr(data, "MNIST_TEST_LABELS", data.Remote(data.MNIST_TEST_LABELS.path, (url + "c", url + "d")))
    start = time.monotonic()
    with pytest.raises(downloads.DataUnavailableError, match="budget was spent") as err:
        data.load_mnist_test()
    assert time.monotonic() - start < 4.0 and "timed out" in str(err.value)   # 4 URLs × 1 s would be 4 s
    monkeypatch.setattr(data, "TIKTOKEN_GPT2", tuple(data.Remote(r.path, (url + "bpe",), sha256=r.sha256)
                                                     for r in data.TIKTOKEN_GPT2))
    start = time.monotonic()
    with pytest.raises(downloads.DataUnavailableError, match="tiktoken"):
        data.gpt2_encoding()                                            # tiktoken never downloads by itself
    assert time.monotonic() - start < 4.0
    srv.close()


def test_bpe_files_are_downloaded_by_our_downloader_and_checked(data_dir, tmp_path, monkeypatch):
    src = tmp_path / "vocab.bpe"
    src.write_text("not the vocabulary")
    monkeypatch.setattr(data, "TIKTOKEN_GPT2", (data.Remote(data.TIKTOKEN_GPT2[0].path, (src.as_uri(),),
                                                            sha256=data.TIKTOKEN_GPT2[0].sha256),))
    with pytest.raises(data.CorruptFileError, match="sha256.*discarded"):
        data.gpt2_encoding()
    assert not (data_dir / "tiktoken").exists() or not any((data_dir / "tiktoken").iterdir())


def test_offline_fix_names_the_actual_data_folder(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("AML_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(data, "MNIST_TEST_IMAGES", data.Remote(data.MNIST_TEST_IMAGES.path, ("file:///no/such/a",)))
    with pytest.raises(downloads.DataUnavailableError, match=f"provision.py {tmp_path / 'elsewhere'}`"):
        data.load_mnist_test()


@pytest.mark.parametrize("content", ["hello", "README of some project\n" * 20, "half"])
def test_a_wrong_alice_file_is_refused_on_every_load(data_dir, content):
    data_dir.mkdir(exist_ok=True)
    book = (PROVISIONED / "alice_in_wonderland.txt").read_text() if content == "half" else None
    (data_dir / "alice_in_wonderland.txt").write_text(book[:len(book) // 2] if book else content)
    with pytest.raises(data.CorruptFileError, match="does not look like the whole of Alice.*Fix: delete"):
        data.load_alice()


def test_a_failed_alice_download_is_deleted_and_said_so(data_dir, tmp_path, monkeypatch):
    page = tmp_path / "page.html"
    page.write_text("<html>Service unavailable</html>")
    monkeypatch.setattr(data, "ALICE", data.Remote("alice_in_wonderland.txt", (page.as_uri(),)))
    for _ in range(2):  # not stuck: the second run downloads again and fails the same way, not on a leftover
        with pytest.raises(data.CorruptFileError, match="it was deleted, so the next run downloads it again"):
            data.load_alice()
        assert not list(data_dir.glob("alice*"))


def test_the_good_alice_file_is_verified_once_per_version(data_dir, monkeypatch):
    data_dir.mkdir(exist_ok=True)
    book = (PROVISIONED / "alice_in_wonderland.txt").read_text()
    (data_dir / "alice_in_wonderland.txt").write_text(book)
    calls = []
    real = data.check_alice_text
    monkeypatch.setattr(data, "check_alice_text", lambda *a: calls.append(1) or real(*a))
    assert data.load_alice() == book and data.load_alice() == book
    assert len(calls) == 1                                              # cached by size and time
    (data_dir / "alice_in_wonderland.txt").write_text(book.replace("THE END", "THE ENF"))
    with pytest.raises(data.CorruptFileError, match="lacks 'THE END'"):
        data.load_alice()


def test_a_same_size_edit_with_the_old_time_is_verified_again(data_dir):
    path = data_dir / "alice_in_wonderland.txt"
    book = (PROVISIONED / "alice_in_wonderland.txt").read_text()
    path.write_text(book)
    data.load_alice()
    stat = path.stat()
    path.write_text(book.replace("THE END", "THE ENF"))                  # one byte, same size...
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))            # ...and the old modification time
    with pytest.raises(data.CorruptFileError, match="lacks 'THE END'"):
        data.load_alice()


@pytest.mark.parametrize("record", ["[1, 2]", "\"text\"", "null", "{broken"])
def test_a_verification_record_of_another_shape_is_treated_as_empty(data_dir, record):
    (data_dir / ".verified.json").write_text(record)
    (data_dir / "alice_in_wonderland.txt").write_text((PROVISIONED / "alice_in_wonderland.txt").read_text())
    assert data.load_alice().rstrip().endswith("THE END")


def test_an_npz_without_the_cifar_keys_or_damaged_is_refused(data_dir):
    data_dir.mkdir(exist_ok=True)
    with open(data_dir / "cifar10.npz", "wb") as f:
        np.savez(f, x_train=np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(data.CorruptFileError, match="no 'y_train'.*Fix: delete"):
        data.load_cifar10()
    (data_dir / "cifar10.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(data.CorruptFileError, match="cifar10.npz is damaged.*Fix: delete"):
        data.load_cifar10()


def test_existing_mnist_files_are_md5_checked(data_dir, monkeypatch):
    (data_dir / "MNIST" / "raw").mkdir(parents=True)
    write_idx(data_dir / data.MNIST_TEST_IMAGES.path, np.zeros((3, 28, 28)))
    write_idx(data_dir / data.MNIST_TEST_LABELS.path, np.zeros(3))
    with pytest.raises(data.CorruptFileError, match="t10k-images.*md5.*Fix: delete"):
        data.load_mnist_test()


@pytest.mark.parametrize("damage", ["not gzip", "truncated gzip"])
def test_a_corrupt_idx_file_names_the_file_and_the_fix(tmp_path, damage):
    path = tmp_path / "i.gz"
    write_idx(path, np.zeros((3, 28, 28)))
    path.write_bytes(b"plain bytes" if damage == "not gzip" else path.read_bytes()[:30])
    with pytest.raises(data.CorruptFileError, match=f"{path} is damaged.*Fix: delete"):
        data.read_idx(path)


def test_a_local_alice_with_gutenbergs_header_and_licence_is_stripped(data_dir):
    book = (PROVISIONED / "alice_in_wonderland.txt").read_text(encoding="utf-8-sig")
    header = "The Project Gutenberg eBook of Alice\n\n*** START OF THE PROJECT GUTENBERG EBOOK 11 ***\n"
    licence = "\n*** END OF THE PROJECT GUTENBERG EBOOK 11 ***\n" + "Section 1. General Terms of Use\n" * 300
    (data_dir / "alice_in_wonderland.txt").write_text(header + book + licence, encoding="utf-8")
    text = data.load_alice()
    assert "PROJECT GUTENBERG" not in text and "General Terms" not in text
    assert text.strip() == book.strip() and data.strip_gutenberg(text) == text     # idempotent


def test_gpt2_encoding_is_built_from_the_checked_bytes_and_equals_tiktokens_own(monkeypatch):
    monkeypatch.setenv("AML_DATA_DIR", str(PROVISIONED))
    ours = data.gpt2_encoding()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(PROVISIONED / "tiktoken"))
    reference = tiktoken.get_encoding("gpt2")                       # tiktoken's own loader, same files
    assert ours.n_vocab == reference.n_vocab == 50257 and ours.eot_token == reference.eot_token == 50256
    assert all(ours.decode_single_token_bytes(i) == reference.decode_single_token_bytes(i) for i in range(50256))
    text = data.load_alice()
    assert ours.encode_ordinary(text) == reference.encode_ordinary(text)


def test_a_flipped_byte_in_a_bpe_file_is_caught_although_size_and_time_match(data_dir, monkeypatch):
    for remote in data.TIKTOKEN_GPT2:
        (data_dir / remote.path).parent.mkdir(exist_ok=True)
        (data_dir / remote.path).write_bytes((PROVISIONED / remote.path).read_bytes())
    assert data.gpt2_encoding().encode("Hello world") == [15496, 995]
    path = data_dir / data.TIKTOKEN_GPT2[1].path
    blob, stat = bytearray(path.read_bytes()), path.stat()
    blob[1000] ^= 1
    path.write_bytes(bytes(blob))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    monkeypatch.setattr(tiktoken.load, "read_file", lambda *a: pytest.fail("tiktoken went to the network"))
    with pytest.raises(data.CorruptFileError, match=f"sha256.*{path.name}|{path.name}.*sha256"):
        data.gpt2_encoding()
