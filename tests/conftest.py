import os

import numpy as np
import pytest
import torch

from helpers import setup
from helpers.gpt import GPT, GPTConfig


@pytest.fixture
def profile(monkeypatch):
    """Switch AML_PROFILE for one test (the profile is otherwise read once per process)."""
    def use(name):
        monkeypatch.setenv("AML_PROFILE", name)
        setup.profile.cache_clear()
    yield use
    setup.profile.cache_clear()


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty data directory for one test."""
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("AML_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def kill_on_call(monkeypatch):
    """kill_on_call(module, name, n): the n-th call of module.name raises KeyboardInterrupt, as a killed
    process would stop there; undo() restores the real function."""
    def install(module, name, n):
        real, calls = getattr(module, name), []

        def dying(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, dying)
        return lambda: monkeypatch.setattr(module, name, real)
    return install


@pytest.fixture
def tiny_images():
    """tiny_images(n=48, seed=0): n random uint8 CIFAR-shaped images (n, 32, 32, 3)."""
    return lambda n=48, seed=0: np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


class Payload:
    """Unpickling this runs a shell command that creates `marker`: what a planted file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def planted():
    """planted(marker): an object whose unpickling would create the file `marker` (a code-running payload)."""
    return Payload


@pytest.fixture
def small_gpt():
    """small_gpt(**overrides): a GPT of 2 layers, 2 heads, width 16, block 16, vocabulary 50, no dropout, in eval
    mode, initialised from seed 0 (the same weights at every call)."""
    def make(**kw):
        torch.manual_seed(0)
        return GPT(GPTConfig(**{**dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16,
                                       dropout=0.0), **kw})).eval()
    return make
