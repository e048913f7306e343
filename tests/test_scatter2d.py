"""helpers.plotting.scatter2d: the one 2-D scatter the diffusion notebook draws with."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from helpers.plotting import scatter2d


def test_scatter2d_labels_limits_and_square():
    fig, ax = plt.subplots()
    points = np.array([[0.0, 0.5], [-0.3, 0.2], [0.9, -0.9]])
    sc = scatter2d(ax, points, lim=2.0, title="t")
    assert np.allclose(sc.get_offsets(), points)
    assert ax.get_xlabel() == r"$x_1$" and ax.get_ylabel() == r"$x_2$"
    assert ax.get_xlim() == (-2.0, 2.0) and ax.get_ylim() == (-2.0, 2.0)
    assert ax.get_aspect() == 1.0 and ax.get_title() == "t"
    (square,) = ax.get_lines()                                    # the [-1, 1]^2 outline, closed
    assert np.allclose(np.abs(square.get_xydata()), 1.0) and len(square.get_xydata()) == 5
    plt.close(fig)


def test_scatter2d_without_square_or_limits():
    fig, ax = plt.subplots()
    scatter2d(ax, np.array([[5.0, 6.0], [7.0, 8.0]]), lim=None, square=False)
    assert ax.get_lines() == [] and ax.get_xlim()[1] > 7.0
    plt.close(fig)
