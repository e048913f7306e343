import getpass
import json
import multiprocessing
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import helpers
from helpers import gpt_training, results, setup, storage, vicreg
from tools import readme


def test_profile_default_and_unknown(profile, monkeypatch):
    monkeypatch.delenv("AML_PROFILE", raising=False)
    setup.profile.cache_clear()
    assert setup.profile() == "default"
    profile("fulll")
    with pytest.raises(ValueError, match="smoke, default, full"):
        setup.profile()


def test_every_notebook_has_every_profile():
    for notebook, by_profile in setup.SETTINGS.items():
        assert set(by_profile) == set(setup.PROFILES), notebook
        keys = {name: set(values) for name, values in by_profile.items()}
        assert keys["smoke"] == keys["default"] == keys["full"], notebook


def test_paths_do_not_depend_on_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("AML_DATA_DIR", raising=False)
    before = setup.data_dir(), setup.figures_dir()
    monkeypatch.chdir(tmp_path)
    assert (setup.data_dir(), setup.figures_dir()) == before
    assert (setup.repo_root() / "helpers" / "setup.py").exists()
    monkeypatch.setenv("AML_DATA_DIR", "data/weights")
    assert setup.data_dir() == setup.repo_root() / "data" / "weights"


def test_start_seeds_everything(profile):
    profile("smoke")
    out = []
    for _ in range(2):
        run = helpers.start("01_diffusion", seed=7, verbose=False)
        out.append((np.random.rand(), torch.rand(1).item(), __import__("random").random()))
    assert out[0] == out[1]
    assert run.profile == "smoke" and run.device.type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown notebook"):
        helpers.start("99_nothing")


def test_smoke_figures_never_touch_readme_figures(profile, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))            # leave nothing in the real temp folder
    profile("smoke")
    helpers.start("01_diffusion", verbose=False)
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    path = helpers.save_fig("unit_test_figure")
    plt.close(fig)
    assert path.exists() and path.read_bytes()[:4] == b"\x89PNG"
    assert setup.figures_dir() not in path.parents
    assert not list(path.parent.glob("*.part"))
    assert path.parent.parent.parent == tmp_path                       # <tmp>/aml-smoke-<user>-<checkout>/<nb>
    assert path.parent.parent.name.startswith(f"aml-smoke-{getpass.getuser()}-")
    with pytest.raises(ValueError, match="plain file name"):
        helpers.save_fig("../escape")
    with pytest.raises(ValueError, match="notebook name '../../etc' must be a plain file name"):
        helpers.save_fig("x", notebook="../../etc")


def test_default_figures_go_to_figures_dir(profile, monkeypatch, tmp_path):
    profile("default")
    monkeypatch.setattr(setup, "figures_dir", lambda: tmp_path / "figures")
    helpers.start("01_diffusion", verbose=False)
    fig = plt.figure()
    path = helpers.save_fig("x")
    plt.close(fig)
    assert path == tmp_path / "figures" / "01_diffusion" / "x.png" and path.exists()


def test_metrics_entry_per_notebook_replaced_whole(tmp_path, profile):
    profile("default")
    path = tmp_path / "metrics.json"
    results.record_metrics("a", path=path, loss=torch.tensor(0.5), steps=np.int64(3))
    results.record_metrics("b", path=path, auc=0.9, bad=float("nan"), worse=[float("inf"), 1.0])
    results.record_metrics("a", path=path, acc=[np.float32(0.25)])
    data = json.loads(path.read_text())
    assert data["a"]["acc"] == [0.25] and "loss" not in data["a"]   # an earlier version's keys go
    assert data["b"]["auc"] == 0.9 and data["a"]["profile"] == "default" and "date" in data["a"]
    assert data["b"]["bad"] is None and data["b"]["worse"] == [None, 1.0]    # standard JSON: no NaN, no Infinity
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".metrics.json.lock", "metrics.json"]


def _write_many(path, prefix, n):
    setup.profile.cache_clear()
    for i in range(n):
        results.record_metrics(f"{prefix}{i}", path=path, value=i)


def test_concurrent_metrics_writers_lose_nothing(tmp_path, profile):
    profile("default")
    path = tmp_path / "metrics.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(path, prefix, 150)) for prefix in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    data = json.loads(path.read_text())
    assert len(data) == 300 and data["a149"]["value"] == 149 and data["b0"]["value"] == 0


@pytest.mark.parametrize("content, what", [(b'{"a": {"x": 1', "not JSON"), (b"", "not JSON"), (b"[1, 2]", "a list"),
                                           (b'{"a": "text"}', "entry of 'a' is a str"),
                                           (b"\x80\x81\xfe", "not UTF-8")])
def test_damaged_metrics_file_is_named_with_the_fix(tmp_path, profile, content, what):
    profile("default")
    path = tmp_path / "metrics.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=what) as err:
        results.load_metrics(path)
    assert str(path) in str(err.value) and "git checkout" in str(err.value)
    with pytest.raises(ValueError, match="damaged"):
        results.record_metrics("a", path=path, x=1)       # nothing is overwritten silently
    assert path.read_bytes() == content


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        storage.atomic_write(path, boom)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_checkpoint_round_trip(tmp_path):
    model = torch.nn.Linear(3, 2)
    storage.save_checkpoint(tmp_path / "c.pt", model=model.state_dict(), config={"a": 1}, step=5)
    state = storage.load_checkpoint(tmp_path / "c.pt")
    assert state["step"] == 5 and state["config"] == {"a": 1}
    assert torch.equal(state["model"]["weight"], model.weight.detach())
    with pytest.raises(FileNotFoundError):
        storage.load_checkpoint(tmp_path / "missing.pt")


def test_settings_build_typed_configs_without_remapping():
    s = setup.settings("02_gpt_alice", "default")
    cfg = s.as_config(gpt_training.TrainConfig, seed=3)
    assert (cfg.max_steps, cfg.batch_size, cfg.lr, cfg.warmup, cfg.eval_every, cfg.eval_batches, cfg.seed) == \
        (s.max_steps, s.batch_size, s.lr, s.warmup, s.eval_every, s.eval_batches, 3)
    assert cfg.weight_decay == gpt_training.TrainConfig().weight_decay      # not a setting: the config's default
    with pytest.raises(ValueError, match="TrainConfig has no field"):
        s.as_config(gpt_training.TrainConfig, sed=3)
    with pytest.raises(ValueError, match="needs a dataclass"):
        s.as_config(dict)


def test_settings_updated_by_command_line_assignments():
    s = setup.settings("03_vicreg", "default")
    u = s.updated(["proj_dim=1024", "epochs=40", "lr=1", "bf16=false", "schedule=constant", "n_train=5000"])
    assert (u.proj_dim, u.epochs, u.lr, u.bf16, u.schedule, u.n_train) == (1024, 40, 1.0, False, "constant", 5000)
    assert type(u.lr) is float and u.width == s.width
    assert s.proj_dim == setup.SETTINGS["03_vicreg"]["default"]["proj_dim"]          # the profile is not changed
    assert s.updated([]) == s
    for bad, message in (("epochs", "not KEY=VALUE"), ("=3", "not KEY=VALUE"), ("epoch=3", "no setting 'epoch'"),
                         ("epochs=2.5", "expected int"), ("blur=1", "expected bool"), ("lr=fast", "expected float")):
        with pytest.raises(ValueError, match=message):
            s.updated([bad])


def test_show_source_displays_the_helper_without_its_docstring(monkeypatch):
    shown = []
    monkeypatch.setattr(helpers, "display", shown.append)
    helpers.show_source(vicreg.variance, vicreg.invariance)
    text = shown[0].data
    assert text.startswith("```python\ndef variance(") and text.endswith("```")
    assert "F.relu(gamma - torch.sqrt(z.var(dim=0) + eps))" in text and "def invariance(" in text
    assert '"""' not in text
    assert '"""' in helpers.source(vicreg.variance, docstring=True)


def test_profile_name_ignores_case(profile):
    profile(" SMOKE ")
    assert setup.profile() == "smoke"


def test_data_dir_setting_must_be_an_existing_folder(monkeypatch, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("AML_DATA_DIR", str(afile))
    with pytest.raises(ValueError, match="is a file"):
        setup.data_dir()
    monkeypatch.setenv("AML_DATA_DIR", str(tmp_path / "typo"))
    with pytest.raises(ValueError, match="does not exist.*mkdir -p"):
        setup.data_dir()
    assert not (tmp_path / "typo").exists()                 # nothing created as a side effect
    monkeypatch.setenv("AML_DATA_DIR", str(tmp_path))
    assert setup.data_dir() == tmp_path
    monkeypatch.delenv("AML_DATA_DIR")
    assert setup.data_dir() == setup.repo_root() / "data"


def test_smoke_output_refuses_a_symlink(profile, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    profile("smoke")
    target = setup.output_dir()
    (tmp_path / "figures").mkdir()
    target.symlink_to(tmp_path / "figures")
    with pytest.raises(ValueError, match="symbolic link"):
        setup.output_dir()
    target.unlink()
    target.mkdir()
    assert setup.output_dir() == target
    monkeypatch.setattr(setup.os, "getuid", lambda: os.stat(target).st_uid + 1)  # as seen by another user
    with pytest.raises(ValueError, match="belongs to another user"):
        setup._check_private_folder(target)


@pytest.mark.parametrize("error", [RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"),
                                   OSError(28, "No space left on device")])
def test_a_full_disk_is_named_as_such(tmp_path, error):
    path = tmp_path / "weights.pt"
    path.write_text("old")

    def full(tmp):
        tmp.write_text("partial")
        raise error

    with pytest.raises(OSError, match=f"no space left on the device while writing {path}") as err:
        storage.atomic_write(path, full)
    assert err.value.errno == 28 and path.read_text() == "old" and not list(tmp_path.glob("*.part"))


def test_a_run_that_did_not_finish_is_refused_by_the_readme(profile, monkeypatch, tmp_path):
    profile("default")
    monkeypatch.setattr(setup, "figures_dir", lambda: tmp_path)
    page, results_page = tmp_path / "README.md", tmp_path / "results.md"
    page.write_text(f"{readme.SUMMARY_START}\n{readme.SUMMARY_END}\n")
    results_page.write_text(f"{readme.START}\n{readme.END}\n")
    helpers.start("01_diffusion", verbose=False)
    helpers.record_metrics(auc=0.5)                                 # a complete run
    entry = results.load_metrics()["01_diffusion"]
    assert entry["complete"] is True and entry["run_id"] == setup.current_run().run_id
    readme.update_readme(page, tmp_path / "metrics.json", notebooks=["01_diffusion"], results_page=results_page)
    assert "| `auc` | 0.5 |" in results_page.read_text() and "run_id" not in results_page.read_text()

    helpers.start("01_diffusion", verbose=False)                    # a second run, killed before its last cell
    assert results.incomplete_runs(results.load_metrics()) == ["01_diffusion"]
    with pytest.raises(ValueError, match="last run of 01_diffusion started but did not finish"):
        readme.update_readme(page, tmp_path / "metrics.json", notebooks=["01_diffusion"], results_page=results_page)
    helpers.record_metrics(auc=0.6)
    assert results.incomplete_runs(results.load_metrics()) == []
