import numpy as np
import pytest

from flowclass.bijectors import alternating_mask, build_mask, channel_mask, checkerboard_mask


def test_alternating_mask_and_parity_are_complementary():
    np.testing.assert_array_equal(alternating_mask(5), [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(alternating_mask(5) + alternating_mask(5, parity=1), np.ones(5))


def test_checkerboard_mask():
    m = checkerboard_mask(3, 3, 2)
    assert m.shape == (3, 3, 2)
    np.testing.assert_array_equal(m[..., 0], [[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    np.testing.assert_array_equal(m + checkerboard_mask(3, 3, 2, parity=1), np.ones((3, 3, 2)))


def test_channel_mask():
    m = channel_mask(2, 2, 4)
    np.testing.assert_array_equal(m[0, 0], [1, 1, 0, 0])
    np.testing.assert_array_equal(channel_mask(2, 2, 4, parity=1)[1, 1], [0, 0, 1, 1])


@pytest.mark.parametrize(
    "mask_type, shape, message",
    [
        ("alternating", (4, 4, 1), "tabular data of shape"),
        ("checkerboard", (4,), "images of shape"),
        ("diagonal", (4,), "unknown mask_type"),
        ("alternating", (1,), "at least 2 features"),
        ("channel", (4, 4, 1), "at least 2 channels"),
    ],
)
def test_bad_masks_raise(mask_type, shape, message):
    with pytest.raises(ValueError, match=message):
        build_mask(mask_type, shape)
