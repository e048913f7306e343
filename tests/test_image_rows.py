import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from helpers.plotting import image_rows  # noqa: E402


def test_image_rows_writes_a_caption_under_each_image_and_keeps_old_calls():
    img = np.zeros((4, 4, 3), np.uint8)
    fig = image_rows([[img, img], [img]], captions=[["", "cat"], ["dog"]])
    axes = np.asarray(fig.axes).reshape(2, 2)
    assert [axes[0, 1].get_xlabel(), axes[1, 0].get_xlabel(), axes[1, 1].get_xlabel()] == ["cat", "dog", ""]
    plt.close(fig)
    fig = image_rows([[img, img]])                                   # no captions: no labels
    assert all(ax.get_xlabel() == "" for ax in fig.axes)
    plt.close(fig)
