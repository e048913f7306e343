import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers import plotting, setup  # noqa: E402
from helpers.plotting import plot_objectives, save_fig  # noqa: E402


def _history(scale: float, epochs: int = 2, steps: int = 5) -> dict:
    rng = np.random.default_rng(int(scale * 10))
    batch = {t: list(scale * (1 + rng.random(epochs * steps))) for t in ("invariance", "variance", "covariance")}
    batch["loss"] = [sum(v) for v in zip(*batch.values())]
    test = [{t: scale * (e + 1.5) for t in ("invariance", "variance", "covariance")} for e in range(epochs)]
    return {"batch": batch, "epoch": list(range(1, epochs + 1)), "test": test}


def test_plot_objectives_draws_each_series_in_three_log_panels_and_saves(monkeypatch, tmp_path):
    monkeypatch.setattr(setup, "output_dir", lambda: tmp_path)
    histories = {"a": _history(1.0), "b": _history(0.2)}
    fig = plot_objectives(histories, "objectives")
    assert [ax.get_title() for ax in fig.axes] == list(plotting.OBJECTIVE_TERMS)
    assert fig.axes[0].get_xlabel() == "training batches, in epochs of 5"          # 5 batches per epoch here
    assert [ax.get_ylabel() for ax in fig.axes] == [f"{t} term (unweighted)" for t in plotting.OBJECTIVE_TERMS]
    for ax, term in zip(fig.axes, plotting.OBJECTIVE_TERMS):
        assert ax.get_yscale() == "log"
        lines = ax.get_lines()
        assert len(lines) == 4                                     # per history: batches and test dots
        for (label, hist), batch_line, test_line in zip(histories.items(), lines[::2], lines[1::2]):
            np.testing.assert_allclose(batch_line.get_ydata(), hist["batch"][term])
            np.testing.assert_allclose(batch_line.get_xdata()[-1], len(hist["epoch"]))   # x in epochs
            np.testing.assert_allclose(test_line.get_ydata(), [t[term] for t in hist["test"]])
            assert batch_line.get_label() == f"{label}, train batches"
    path = save_fig("objectives_test", fig, notebook="unit")
    plt.close(fig)
    assert path == tmp_path / "unit" / "objectives_test.png" and path.read_bytes()[:4] == b"\x89PNG"


def test_plot_objectives_symlog_labels_a_narrow_panel_at_1_2_5():
    hist = _history(1.0)
    hist["batch"]["invariance"] = [0.0] * 10                       # a term at exactly 0: symlog shows it
    hist["batch"]["variance"] = list(np.linspace(0.45, 2.2, 10))   # under one decade: one label (1) by default
    fig = plot_objectives({"a": hist}, "t", yscale="symlog")
    assert all(ax.get_yscale() == "symlog" for ax in fig.axes)
    fig.canvas.draw()
    low, high = fig.axes[1].get_ylim()                             # variance: 0.45..3.5
    ticks = [t for t in fig.axes[1].get_yticks() if low <= t <= high]
    assert {0.5, 1.0, 2.0} <= set(np.round(ticks, 6))
    plt.close(fig)


def test_plot_objectives_rejects_bad_input():
    with pytest.raises(ValueError, match="yscale"):
        plot_objectives({"a": _history(1.0)}, "t", yscale="logit")
    with pytest.raises(ValueError, match="lacks"):
        plot_objectives({"a": {"batch": {}, "epoch": [1], "test": []}}, "t")
    with pytest.raises(ValueError, match="empty"):
        plot_objectives({}, "t")
