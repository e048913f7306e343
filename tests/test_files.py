"""Files the workbook reads back (checkpoints, weights, caches): never run code, always say what is wrong."""
import os
import subprocess
import sys
import textwrap
from dataclasses import asdict

import numpy as np
import pytest
import torch

from helpers import gpt_training as GT, storage, vicreg_models as M, vicreg_training as VT
from helpers import vicreg as V
from helpers.vicreg import EncoderConfig




def test_a_checkpoint_with_a_planted_payload_is_refused_and_nothing_runs(planted, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": planted(marker)}, tmp_path / "evil.pt")
    with pytest.raises(storage.CorruptFileError, match="evil.pt was refused.*could run code"):
        storage.load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "not torch"])
def test_a_damaged_checkpoint_names_the_file_and_the_fix(tmp_path, damage):
    path = tmp_path / "c.pt"
    storage.save_checkpoint(path, model={"w": torch.randn(1000)}, step=3)
    raw = path.read_bytes()
    path.write_bytes({"truncated": raw[:len(raw) // 2], "zeroed": raw[:64] + bytes(len(raw) - 64),
                      "not torch": b"hello"}[damage])
    with pytest.raises(storage.CorruptFileError, match=f"{path} is (damaged|not a readable).*Fix: retrain"):
        storage.load_checkpoint(path, fix="retrain")


def test_a_flipped_byte_in_a_checkpoint_is_caught_by_its_digest(tmp_path):
    path = tmp_path / "state.pt"
    weights = torch.full((4096,), 0.5)
    storage.save_checkpoint(path, model={"w": weights}, step=3, history={"loss": [1.0, 0.5]})
    state = storage.load_checkpoint(path)
    assert torch.equal(state["model"]["w"], weights) and state["step"] == 3 and set(state) == {"model", "step",
                                                                                                "history"}
    blob = bytearray(path.read_bytes())
    at = bytes(blob).find(weights.numpy().tobytes()) + 4 * 2000 + 3      # the high byte of one float in the data
    blob[at] ^= 0x40
    path.write_bytes(bytes(blob))
    with pytest.raises(storage.CorruptFileError, match="state.pt is damaged.*digest.*Fix"):
        storage.load_checkpoint(path)
    legacy = tmp_path / "legacy.pt"                                         # written before digests existed
    torch.save({"model": {"w": weights}}, legacy)
    assert torch.equal(storage.load_checkpoint(legacy)["model"]["w"], weights)


def test_training_checkpoints_hold_only_safe_types(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    cfg = VT.VICRegConfig(encoder=EncoderConfig(width=4, stem_stride=2, repr_dim=8, proj_dim=16), epochs=1,
                          batch_size=16, bf16=False)
    VT.train_vicreg(images, cfg, checkpoint=tmp_path / "v.pt", progress=False)
    assert storage.load_checkpoint(tmp_path / "v.pt")["epoch"] == 1          # weights_only=True reads it
    with pytest.raises(ValueError, match=r"another configuration \(lr: saved 0.0003, wanted 0.001\)"):
        VT.train_vicreg(images, VT.VICRegConfig(**{**cfg.__dict__, "lr": 1e-3}), checkpoint=tmp_path / "v.pt",
                        progress=False)
    with pytest.raises(ValueError, match="not a GPT checkpoint of this workbook"):
        GT.load_model(tmp_path / "v.pt")


KILLED_WRITER = textwrap.dedent("""
    import os, sys
    from helpers import storage
    def write(tmp):
        tmp.write_bytes(b"x" * 1000)
        os.kill(os.getpid(), 9)          # killed in the middle of a checkpoint write
    storage.atomic_write(sys.argv[1], write)
""")


def test_parts_of_killed_writers_are_swept_by_the_next_write(tmp_path):
    target = tmp_path / "ckpt.pt"
    left = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], cwd=M.setup.repo_root())
        assert proc.returncode == -9
        left.append(sorted(tmp_path.glob(".ckpt.pt.*.part")))
    assert len(left[0]) == 1 and len(left[1]) == 1 and left[0] != left[1]   # the second swept the first's
    assert not target.exists()
    storage.save_checkpoint(target, step=1)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_a_failed_write_leaves_no_part_and_a_live_writers_part_is_kept(tmp_path):
    target = tmp_path / "t.txt"
    live = tmp_path / f".t.txt.{os.getpid()}.abc.part"      # our own process: alive, maybe mid-write
    live.write_text("in progress")
    with pytest.raises(RuntimeError):
        storage.atomic_write(target, lambda tmp: (tmp.write_text("half"), (_ for _ in ()).throw(RuntimeError())))
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]


def test_shipped_weights_match_their_manifest():
    folder = M.setup.weights_dir()
    sums = M.read_manifest(folder)
    shipped = sorted(p.name for p in folder.glob("*.pt"))
    assert shipped and sorted(sums) == shipped
    for name in shipped:
        assert M.sha256(folder / name) == sums[name]


def test_changed_weights_are_refused_with_the_fix(tmp_path):
    src = M.setup.weights_dir() / "vicreg_default.pt"
    copy = tmp_path / "vicreg_default.pt"
    copy.write_bytes(src.read_bytes())
    M.record_in_manifest(copy)
    raw = bytearray(copy.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 1000] = bytes(1000)     # 1,000 zeroed bytes inside the weights
    copy.write_bytes(bytes(raw))
    with pytest.raises(storage.CorruptFileError, match="does not match its recorded sha256.*git checkout.*make weights"):
        M.load_weights(copy, spec={})


def test_a_damaged_feature_cache_entry_is_recomputed(data_dir):
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    torch.manual_seed(0)
    encoder = V.VICReg(EncoderConfig(width=4, stem_stride=2, repr_dim=8, proj_dim=16)).encoder
    first = M.cached_features(encoder, images, "t")
    [entry] = (data_dir / "cache").glob("features_t_*.pt")
    entry.write_bytes(entry.read_bytes()[:100])
    assert torch.equal(M.cached_features(encoder, images, "t"), first)
    assert storage.load_checkpoint(entry)["features"].shape == (12, 8)     # rewritten whole


def test_require_writable_names_the_folder_and_why(tmp_path):
    (tmp_path / "f").write_text("")
    assert storage.require_writable(tmp_path / "new" / "sub", "tests write there") == tmp_path / "new" / "sub"
    assert (tmp_path / "new" / "sub").is_dir() and not list((tmp_path / "new" / "sub").iterdir())  # probe removed
    with pytest.raises(PermissionError, match=r"f/x must be writable: checkpoints go there .*AML_DATA_DIR"):
        storage.require_writable(tmp_path / "f" / "x", "checkpoints go there")


_WRITER = textwrap.dedent("""
    import sys, torch
    from dataclasses import asdict
    from helpers import vicreg_models as M
    from helpers.vicreg import Encoder
    path, n = sys.argv[1], int(sys.argv[2])
    cfg = M.VICRegConfig(encoder=M.EncoderConfig(width=4, stem_stride=2, repr_dim=8))
    for i in range(n):
        torch.manual_seed(i % 2)                # two different encoders, alternately
        M.save_weights(path, Encoder(cfg.encoder), {"config": asdict(cfg), "depends": None}, {"seconds": 1.0})
""")


def test_weights_saved_while_another_process_loads_them_are_never_reported_damaged(tmp_path):
    """File and manifest entry are replaced under one lock and loads read the bytes they checked: a reader never
    sees a new file with the old digest (before, 21 of 400 loads raised a false 'does not match')."""
    path = tmp_path / "w.pt"
    cfg = M.VICRegConfig(encoder=EncoderConfig(width=4, stem_stride=2, repr_dim=8))
    spec = {"config": asdict(cfg), "depends": None}
    torch.manual_seed(0)
    M.save_weights(path, V.Encoder(cfg.encoder), spec, {"seconds": 1.0})
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), "60"], cwd=M.setup.repo_root())
    loads = 0
    while writer.poll() is None or loads < 20:
        M.load_weights(path, spec)                                      # raises on a false mismatch
        loads += 1
    assert writer.wait() == 0 and loads >= 20


_RECORDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from helpers import vicreg_models as M
    folder, tag = Path(sys.argv[1]), sys.argv[2]
    for i in range(100):
        f = folder / f"{tag}{i}.pt"
        f.write_bytes(f"{tag}{i}".encode())
        M.record_in_manifest(f)
""")


def test_two_processes_recording_in_the_manifest_lose_no_entry(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", _RECORDER, str(tmp_path), tag], cwd=M.setup.repo_root())
             for tag in "ab"]
    assert [p.wait() for p in procs] == [0, 0]
    sums = M.read_manifest(tmp_path)
    assert len(sums) == 200 and sums["a7.pt"] == M.sha256(tmp_path / "a7.pt")
