import numpy as np
import pytest

from helpers import retrieval as R


def test_neighbour_rates_count_labels_and_give_chance_levels():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 3])                  # classes 0, 1 animals; 2, 3 vehicles
    group = np.array([False, False, True, True])
    query_labels = np.array([0, 2])
    near = np.array([[1, 2], [5, 6]])                            # query 0: one of two same; query 2: both same
    far = np.array([[4, 7], [0, 1]])                             # every far image of the other kind, none same
    r = R.neighbour_rates(query_labels, near, far, labels, group)
    assert r["same_near"] == pytest.approx(3 / 4)
    assert r["same_far"] == 0
    assert r["other_kind_far"] == 1
    assert r["chance_same"] == pytest.approx((2 / 8 + 3 / 8) / 2)
    assert r["chance_other_kind"] == pytest.approx((4 / 8 + 4 / 8) / 2)
    with pytest.raises(ValueError, match="queries"):
        R.neighbour_rates(query_labels[:1], near, far, labels, group)


def test_chance_of_the_other_kind_is_48_percent_for_4_vehicle_and_6_animal_classes():
    labels = np.repeat(np.arange(10), 10)
    group = np.array([c in (0, 1, 8, 9) for c in range(10)])
    r = R.neighbour_rates(labels, np.zeros((100, 1), int), np.zeros((100, 1), int), labels, group)
    assert r["chance_other_kind"] == pytest.approx(0.48)
    assert r["chance_same"] == pytest.approx(0.1)


def test_concentration_counts_distinct_images_and_the_top_share():
    lists = np.array([[5, 6], [5, 7], [5, 6]])
    c = R.concentration(lists, top=1)
    assert c == {"distinct": 3, "slots": 6, "top_share": pytest.approx(3 / 6)}
    assert R.concentration(np.arange(6).reshape(3, 2), top=2)["top_share"] == pytest.approx(2 / 6)


def test_ink_fraction_is_the_share_of_bright_pixels():
    x = np.zeros((2, 4, 4, 3), np.uint8)
    x[0, :2] = 255                                               # half the pixels white
    x[1, 0, 0] = 100                                             # one dim pixel: below the threshold
    assert np.allclose(R.ink_fraction(x), [0.5, 0.0])
    assert np.allclose(R.ink_fraction(x[..., 0]), [0.5, 0.0])
    with pytest.raises(ValueError, match="uint8"):
        R.ink_fraction(x.astype(float))


def test_image_statistics_and_gaps_beside_chance():
    images = np.zeros((4, 8, 8, 3), np.uint8)
    images[1] = 255                                              # white
    images[2, :, :4] = 255                                       # left half white
    images[3, :, :, 0] = 255                                     # red
    s = R.image_statistics(images)
    assert s["brightness"].tolist() == pytest.approx([0, 1, 0.5, 1 / 3])
    assert s["colour"][3].tolist() == pytest.approx([1, 0, 0])
    assert np.abs(s["layout"][[0, 1, 3]]).max() == 0             # uniform images have no layout
    assert s["layout"][2].reshape(4, 4)[:, :2] == pytest.approx(0.5)
    g = R.statistic_gaps(images, np.array([0, 1]), np.array([[0], [1]]))   # each query retrieves itself
    assert all(v["retrieved"] == 0 for v in g.values())
    assert g["brightness"]["random"] > 0
    with pytest.raises(ValueError, match="queries"):
        R.statistic_gaps(images, np.array([0]), np.array([[0], [1]]))
    with pytest.raises(ValueError, match="uint8"):
        R.image_statistics(images[..., 0])


def test_digit_shape_counts_enclosed_loops_and_measures_stroke_width():
    x = np.zeros((4, 20, 20), dtype=np.uint8)
    x[0, 4:16, 4:16] = 255
    x[0, 7:13, 7:13] = 0                                   # a ring: one enclosed hole
    x[1, 2:18, 9:11] = 255                                 # a thin bar: no hole
    x[2, 2:8, 2:8] = 255; x[2, 3:5, 3:5] = 0               # two rings: two holes
    x[2, 10:16, 10:16] = 255; x[2, 12:14, 12:14] = 0
    x[3, 5:11, 5:11] = 255                                 # a filled 6x6 block
    shape = R.digit_shape(x)
    assert shape["loops"].tolist() == [1, 0, 2, 0]
    assert np.isclose(shape["thickness"][3], 36 / 20)     # k²/(4k − 4) for k = 6
    assert shape["thickness"][3] > shape["thickness"][1]  # the block is thicker than the 2-pixel bar
    rgb = np.repeat(x[..., None], 3, axis=-1)
    assert R.digit_shape(rgb)["loops"].tolist() == [1, 0, 2, 0]
    with pytest.raises(ValueError, match="uint8"):
        R.digit_shape(x.astype(float))
