"""Binary masks for affine couplings.

A mask ``m`` has the event shape of the data; entries with ``m = 1`` pass through
unchanged and condition the transform of the entries with ``m = 0``. ``parity``
flips the mask so that consecutive couplings transform complementary halves.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

MaskType = Literal["alternating", "checkerboard", "channel"]


def alternating_mask(num_features: int, parity: int = 0) -> np.ndarray:
    """Tabular mask ``m_i = (i + parity + 1) mod 2``: ``[1, 0, 1, ...]`` for parity 0.

    >>> alternating_mask(4).tolist()
    [1.0, 0.0, 1.0, 0.0]
    """
    if num_features < 2:
        raise ValueError(f"an alternating mask needs at least 2 features; got {num_features}.")
    return ((np.arange(num_features) + parity + 1) % 2).astype(np.float32)


def checkerboard_mask(height: int, width: int, channels: int, parity: int = 0) -> np.ndarray:
    """Image mask ``m_{hwc} = (h + w + parity + 1) mod 2``, shape ``(height, width, channels)``.

    >>> checkerboard_mask(2, 2, 1)[..., 0].tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    h, w = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    board = ((h + w + parity + 1) % 2).astype(np.float32)
    return np.repeat(board[:, :, None], channels, axis=2)


def channel_mask(height: int, width: int, channels: int, parity: int = 0) -> np.ndarray:
    """Image mask that passes the first half of the channels (parity 0) or the second.

    >>> channel_mask(1, 1, 4)[0, 0].tolist(), channel_mask(1, 1, 4, parity=1)[0, 0].tolist()
    ([1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0])
    """
    if channels < 2:
        raise ValueError(f"a channel mask needs at least 2 channels; got {channels}.")
    first = (np.arange(channels) < channels // 2).astype(np.float32)
    per_channel = first if parity % 2 == 0 else 1.0 - first
    return np.broadcast_to(per_channel, (height, width, channels)).copy()


def build_mask(mask_type: MaskType, event_shape: Sequence[int], parity: int = 0) -> np.ndarray:
    """The mask of ``mask_type`` for data of ``event_shape`` (``(D,)`` or ``(H, W, C)``).

    >>> build_mask("alternating", (4,), parity=1).tolist()
    [0.0, 1.0, 0.0, 1.0]
    >>> build_mask("checkerboard", (28, 28, 1)).shape
    (28, 28, 1)
    """
    event_shape = tuple(event_shape)
    if mask_type == "alternating":
        if len(event_shape) != 1:
            raise ValueError(
                f"'alternating' masks are for tabular data of shape (D,); got event shape {event_shape}."
            )
        return alternating_mask(event_shape[0], parity)
    if mask_type in ("checkerboard", "channel"):
        if len(event_shape) != 3:
            raise ValueError(
                f"'{mask_type}' masks are for images of shape (H, W, C); got event shape {event_shape}."
            )
        builder = checkerboard_mask if mask_type == "checkerboard" else channel_mask
        return builder(*event_shape, parity=parity)
    raise ValueError(
        f"unknown mask_type {mask_type!r}; expected 'alternating', 'checkerboard' or 'channel'."
    )
