import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers import setup, storage
from helpers import vicreg_models as M
from helpers import vicreg_training as VT
from helpers.vicreg import Encoder, EncoderConfig


def tiny_settings(**kw):
    return SimpleNamespace(**{**dict(width=4, stem_stride=2, proj_dim=16, epochs=2, batch_size=16, lr=1e-3,
                                     schedule="cosine", neighbour_epochs=1, neighbour_lr=3e-4, retrain=False, bf16=False,
                                     warmup_epochs=1.0, optimizer="adam", weight_decay=1e-6, blur=True,
                                     deterministic=True), **kw})


@pytest.fixture
def weights(tmp_path, monkeypatch, profile, data_dir):
    """The default profile, with weights and checkpoints in a temporary folder."""
    profile("default")
    monkeypatch.setattr(setup, "weights_dir", lambda: tmp_path / "weights")
    return tmp_path / "weights"


def test_weights_round_trip_and_are_never_loaded_for_another_config(tiny_images, weights, monkeypatch):
    images = tiny_images()
    cfg = M.model_config("vicreg", tiny_settings())
    encoder, history = M.load_or_train("vicreg", cfg, images, images[:16], progress=False)
    path = weights / "vicreg_default.pt"
    saved = torch.load(path, weights_only=False)
    assert saved["spec"]["config"]["epochs"] == 2 and len(history["epoch"]) == 2 and history["minutes"] > 0
    assert 0 < history["epoch_seconds"][0] < history["epoch_seconds"][1] == pytest.approx(history["minutes"] * 60)
    assert all(v.dtype == torch.float16 for v in saved["encoder"].values() if v.is_floating_point())
    assert not (setup.data_dir() / "checkpoints" / "vicreg_default.pt").exists()  # removed once shipped

    def no_training(*args, **kwargs):
        raise AssertionError("matching weights must be loaded, not retrained")

    monkeypatch.setattr(M, "train_vicreg", no_training)
    again, _ = M.load_or_train("vicreg", cfg, images, progress=False)
    assert torch.equal(VT.features(encoder, images), VT.features(again, images))
    other = M.model_config("vicreg", tiny_settings(lr=3e-4))
    with pytest.raises(ValueError, match="another configuration.*lr: saved 0.001, wanted 0.0003"):
        M.load_or_train("vicreg", other, images, progress=False)
    wider = M.model_config("vicreg", tiny_settings(proj_dim=32))  # the projector's width is part of the recipe
    assert wider.encoder.proj_dim == 32
    with pytest.raises(ValueError, match="another configuration.*proj_dim"):
        M.load_or_train("vicreg", wider, images, progress=False)
    with pytest.raises(AssertionError, match="retrained"):
        M.load_or_train("vicreg", cfg, images, retrain=True, progress=False)


def test_no_neighbours_model_trains_on_neighbours_of_the_unshuffled_training_set(tiny_images, weights, monkeypatch):
    images = tiny_images(64)
    s = tiny_settings(epochs=1)
    seen = {}
    real = M.train_vicreg

    def spy(images, cfg, *args, neighbours=None, **kwargs):
        if neighbours is not None:
            seen["neighbours"] = neighbours
        return real(images, cfg, *args, neighbours=neighbours, **kwargs)

    monkeypatch.setattr(M, "train_vicreg", spy)
    models = M.build(s, images, images[:16], progress=False)
    nb = seen["neighbours"]
    assert nb.shape == (64, M.N_NEIGHBOURS)
    assert not (nb == torch.arange(64)[:, None]).any()
    f = VT.features(models["vicreg"][0], images)          # in data order, from the loaded weights
    d = torch.cdist(f, f).fill_diagonal_(float("inf"))
    assert torch.equal(nb.sort(1).values, d.topk(M.N_NEIGHBOURS, largest=False).indices.sort(1).values)
    spec = torch.load(weights / "no_neighbours_default.pt", weights_only=False)["spec"]
    assert spec["depends"]["neighbours_of"]["config"]["mu"] == 25.0
    configs = {name: torch.load(weights / f"{name}_default.pt", weights_only=False)["spec"]["config"]
               for name in ("vicreg", "no_variance")}
    assert configs["no_variance"] == {**configs["vicreg"], "mu": 0.0}  # same seed and epochs: µ the only difference


def test_training_speed_is_the_median_epoch():
    history = {"epoch": [1, 2, 3, 4], "epoch_seconds": [60.0, 120.0, 600.0, 660.0]}  # epoch 3 shared the cores
    speed = M.training_speed(history, images_per_epoch=6000)
    assert speed["epoch_minutes"] == pytest.approx([1, 1, 8, 1]) and speed["images_per_second"] == pytest.approx(100)
    with pytest.raises(ValueError, match="no per-epoch training times"):
        M.training_speed({"epoch": [1, 2], "seconds": 10.0}, 6000)


def test_neighbour_pairs_replace_the_generated_views(tiny_images):
    images = tiny_images(32)
    cfg = VT.VICRegConfig(encoder=M.EncoderConfig(width=4, stem_stride=2, repr_dim=8, proj_dim=16), epochs=1,
                          batch_size=16, bf16=False)
    itself = torch.arange(32)[:, None]                   # each image paired with itself: identical views
    _, hist = VT.train_vicreg(images, cfg, neighbours=itself, progress=False)
    assert hist["batch"]["invariance"] == [0.0, 0.0]
    _, hist = VT.train_vicreg(images, cfg, progress=False)
    assert min(hist["batch"]["invariance"]) > 0
    with pytest.raises(ValueError, match="neighbours must be"):
        VT.train_vicreg(images, cfg, neighbours=itself[:10], progress=False)
    with pytest.raises(ValueError, match="refer to the training images"):
        VT.train_vicreg(images, cfg, neighbours=itself + 32, progress=False)


def test_cached_features_are_keyed_by_the_weights(tiny_images, data_dir, monkeypatch):
    monkeypatch.setattr(setup, "bf16_fast", lambda device: False)  # fp32 features on every CPU (AMX ones included)
    images = tiny_images(20)
    cfg = M.model_config("vicreg", tiny_settings(epochs=1))
    model, _ = VT.train_vicreg(images, cfg, progress=False)
    first = M.cached_features(model.encoder, images, "t")
    assert len(list((data_dir / "cache").glob("features_t_*.pt"))) == 1
    assert torch.equal(first, M.cached_features(model.encoder, images, "t"))
    with torch.no_grad():
        model.encoder.head[-1].bias += 1.0
    moved = M.cached_features(model.encoder, images, "t")
    assert torch.allclose(moved, first + 1.0, atol=1e-5)
    assert len(list((data_dir / "cache").glob("features_t_*.pt"))) == 2


def test_bf16_features_are_cached_apart_from_fp32_ones(tiny_images, data_dir, monkeypatch):
    """Where bf16 is native, `features` runs in bf16: those features (3 significant digits) never stand in for fp32
    ones, nor the other way round."""
    images = tiny_images(8)
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(width=4, stem_stride=2, repr_dim=8))
    monkeypatch.setattr(setup, "bf16_fast", lambda device: False)  # as on an AVX2-only CPU
    fp32 = M.cached_features(encoder, images, "t")
    monkeypatch.setattr(setup, "bf16_fast", lambda device: True)   # as on an AVX-512 BF16 / AMX CPU
    bf16 = M.cached_features(encoder, images, "t")
    assert sorted(p.name.endswith("_bf16.pt") for p in (data_dir / "cache").glob("features_t_*.pt")) == [False, True]
    assert not torch.equal(bf16, fp32) and torch.allclose(bf16, fp32, atol=0.05 * fp32.abs().max())
    assert torch.equal(M.cached_features(encoder, images, "t"), bf16)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model"):
        M.model_config("simclr", tiny_settings())


def test_shipped_default_weights_match_the_default_settings(profile):
    """The committed weights load for the default profile: changing its settings without `make weights` fails."""
    profile("default")
    s = setup.settings("03_vicreg")
    for name in M.MODELS:
        path = M.weights_path(name)
        assert path.parent == setup.weights_dir() and path.exists(), f"{path} is not shipped"
        assert path.stat().st_size < 16e6
        encoder, history = M.load_weights(path, M.model_spec(name, s, n_train=50000))
        assert len(history["epoch"]) == M.model_config(name, s).epochs and history["minutes"] > 0


def test_an_interrupted_retrain_resumes_and_only_fresh_starts_over(tiny_images, weights, kill_on_call, monkeypatch,
                                                                   capsys):
    """`make weights` (retrain) after an interruption continues from the last epoch; `make weights FRESH=1` does not."""
    images = tiny_images(32)
    cfg = M.model_config("vicreg", tiny_settings(epochs=3))
    checkpoint = setup.data_dir() / "checkpoints" / "vicreg_default.pt"
    undo = kill_on_call(VT, "save", 3)              # killed while writing epoch 3's checkpoint
    with pytest.raises(KeyboardInterrupt):
        M.load_or_train("vicreg", cfg, images, retrain=True, progress=False)
    undo()
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 2
    real_save, saved = VT.save, []
    monkeypatch.setattr(VT, "save", lambda *a, **k: saved.append(k["epoch"]) or real_save(*a, **k))

    _, history = M.load_or_train("vicreg", cfg, images, retrain=True, progress=False)
    assert f"resuming from epoch 2 of {checkpoint}" in capsys.readouterr().out
    assert saved == [3] and history["epoch"] == [1, 2, 3]                   # epochs 1 and 2 were not redone
    assert not checkpoint.exists()                                          # removed once the weights are saved

    saved.clear()
    undo = kill_on_call(VT, "save", 2)
    with pytest.raises(KeyboardInterrupt):
        M.load_or_train("vicreg", cfg, images, retrain=True, progress=False)
    undo()
    assert saved == [1] and checkpoint.exists()
    saved.clear()
    M.load_or_train("vicreg", cfg, images, retrain=True, progress=False, fresh=True)
    out = capsys.readouterr().out
    assert f"starting over: deleting {checkpoint}" in out and "resuming" not in out and saved == [1, 2, 3]


@pytest.mark.parametrize("bad", ["(40, 7)", "1-D", "int64", "fp16", "NaN", "all zero", "not a tensor"])
def test_a_wrong_feature_cache_entry_is_recomputed(tiny_images, data_dir, bad, capsys):
    images = tiny_images(12)
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(width=4, stem_stride=2, repr_dim=8)).eval()
    good = M.cached_features(encoder, images, "t")
    [entry] = (data_dir / "cache").glob("features_t_*.pt")
    wrong = {"(40, 7)": torch.randn(12, 7), "1-D": good.flatten(), "int64": good.long(), "fp16": good.half(),
             "NaN": good.clone().fill_(float("nan")), "all zero": torch.zeros_like(good),
             "not a tensor": [1.0, 2.0]}[bad]
    storage.save_checkpoint(entry, features=wrong)
    again = M.cached_features(encoder, images, "t")
    assert torch.equal(again, good) and f"recomputing the cached features {entry.name}" in capsys.readouterr().out
    assert torch.equal(storage.load_checkpoint(entry)["features"], good)         # the entry was rewritten


def test_a_read_only_cache_folder_is_skipped_with_one_warning(tiny_images, data_dir, monkeypatch):
    images = tiny_images(8)
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(width=4, stem_stride=2, repr_dim=8)).eval()
    real = storage.tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).name == "cache":
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(storage.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(M, "_UNCACHED", set())
    with pytest.warns(UserWarning, match="features are not cached.*cache must be writable"):
        first = M.cached_features(encoder, images, "t")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                        # said once, not at every call
        assert torch.equal(M.cached_features(encoder, images, "t"), first)
    assert not list((data_dir / "cache").glob("features_t_*.pt"))


def test_training_into_a_read_only_folder_stops_before_the_first_step(tiny_images, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setattr(VT, "train_step", lambda *a, **k: pytest.fail("training started"))
    cfg = M.model_config("vicreg", tiny_settings(epochs=1))
    with pytest.raises(PermissionError, match=r"a_file/checkpoints must be writable: training writes a checkpoint"):
        VT.train_vicreg(tiny_images(16), cfg, checkpoint=tmp_path / "a_file" / "checkpoints" / "v.pt",
                        progress=False)
