import pytest

from helpers import setup


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
    monkeypatch.setenv("AML_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"
