import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from helpers.plotting import colored_tokens  # noqa: E402


def test_tokens_do_not_overlap_and_values_sit_under_their_tokens():
    fig, ax = plt.subplots(figsize=(6, 1))
    tokens = ["Alice", " looked", " at", " the", "\n", " Queen"]
    colored_tokens(ax, tokens, [0.1, 0.2, 0.05, 0.3, 0.0, 0.6], highlight=5, values=".2f", fontsize=11)
    renderer = fig.canvas.get_renderer()
    words, labels = ax.texts[0::2], ax.texts[1::2]
    assert [t.get_text() for t in words][4] == "⏎"
    assert [t.get_text() for t in labels] == [".10", ".20", ".05", ".30", ".00", ".60"]
    boxes = [t.get_window_extent(renderer) for t in words]
    assert all(a.x1 <= b.x0 + 1e-6 for a, b in zip(boxes, boxes[1:]))          # left to right, no overlap
    for word, label in zip(boxes, (t.get_window_extent(renderer) for t in labels)):
        assert word.x0 - 1 <= (label.x0 + label.x1) / 2 <= word.x1 + 1 and label.y1 <= word.y0
    plt.close(fig)


def test_without_values_one_text_per_token_and_a_length_check():
    fig, ax = plt.subplots()
    colored_tokens(ax, ["a", "b"], [0.5, 1.0])
    assert len(ax.texts) == 2
    with pytest.raises(ValueError, match="2 tokens but 1 scores"):
        colored_tokens(ax, ["a", "b"], [0.5])
    plt.close(fig)
