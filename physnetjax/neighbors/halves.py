"""The *halves* layout of a full directed pair list: slot k + Q/2 holds the reverse of slot k.

A full list (every pair in both directions) can be stored as one direction of each
unordered pair in its first Q/2 slots and, in the same order, their reverses in the
last Q/2. It is still a full list for every pair reduction; the D3 dispersion term,
which evaluates each unordered pair once, then takes the first half as a static slice
instead of selecting it inside ``jit`` (a cumulative sum and a scatter over all Q
slots, :func:`physnetjax.physics.dispersion.one_direction`). The host builders store
the separate pair list this way and mark the :class:`~physnetjax.neighbors.Batch` with
``pair_halves=True``; :func:`check_pair_halves` verifies the layout of concrete arrays
(an un-jitted model call). Padded pairs sit at the end of each half, masked in both.
"""

from __future__ import annotations

import numpy as np


def first_direction(dst, src, shifts=None) -> np.ndarray:
    """(Q,) bool: the direction of each pair that goes into the first half.

    i → j with i < j; of a periodic self-image pair i → i the direction whose image
    shift has its first non-zero component positive (the rule of ``one_direction``).
    """
    dst, src = np.asarray(dst), np.asarray(src)
    if shifts is None:
        return dst < src
    shifts = np.asarray(shifts)
    x, y, z = shifts[:, 0], shifts[:, 1], shifts[:, 2]
    positive = np.where(x != 0.0, x > 0.0, np.where(y != 0.0, y > 0.0, z > 0.0))
    return (dst < src) | ((dst == src) & positive)


def check_pair_halves(dst, src, mask, shifts=None, *, name: str = "pair list") -> None:
    """Raise ValueError unless slot k + Q/2 of the list reverses slot k and no pair is in the first half twice.

    Args:
      dst, src: (Q,) concrete indices; mask: (Q,) bool; shifts: (Q, 3) Å or None.
    """
    dst, src, mask = np.asarray(dst), np.asarray(src), np.asarray(mask, dtype=bool)
    size = dst.shape[0]
    if size % 2:
        raise ValueError(f"{name}: pair_halves=True needs an even number of slots, received {size}")
    half = size // 2
    real = mask[:half]
    reversed_ok = (mask[half:] == real) & (~real | ((dst[:half] == src[half:]) & (src[:half] == dst[half:])))
    if shifts is not None:
        shifts = np.asarray(shifts, dtype=np.float64)
        close = np.all(np.abs(shifts[:half] + shifts[half:]) <= 1e-4, axis=-1)
        reversed_ok &= ~real | close
    if not np.all(reversed_ok):
        k = int(np.argmin(reversed_ok))
        raise ValueError(f"{name}: pair_halves=True but slot {k + half} is not the reverse of slot {k} "
                         f"({dst[k]} → {src[k]} and {dst[k + half]} → {src[k + half]}, masks {mask[k]}, {mask[k + half]})")
    columns = [dst[:half][real], src[:half][real]]
    reverse = [src[:half][real], dst[:half][real]]
    if shifts is not None:
        images = np.round(shifts[:half][real], 4)
        columns.extend(images.T)
        reverse.extend((-images + 0.0).T)
    forward_rows = np.stack(columns, axis=1)
    both = np.concatenate([forward_rows, np.stack(reverse, axis=1)])
    if np.unique(both, axis=0).shape[0] != both.shape[0]:
        raise ValueError(f"{name}: pair_halves=True but its first half lists some pair twice "
                         "(in both directions, or the same direction twice)")


def halves_layout(dst, src, shifts, size: int, pad_index: int, dtype):
    """The full list (dst, src, shifts) in halves layout, padded to ``size`` (even) slots.

    Args:
      dst, src: (Q,) a full directed list; shifts: (Q, 3) Å or None; size: even, ≥ Q;
      pad_index: atom index of padded slots; dtype: of the padded shifts.

    Returns:
      dst, src (size,) int32, mask (size,) bool, shifts (size, 3) or None.

    Raises:
      ValueError: odd ``size`` or one smaller than Q, or a list that is not full (not
        exactly half of its pairs in the first direction).
    """
    forward = first_direction(dst, src, shifts)
    count = int(np.sum(forward))
    if size % 2 or size < 2 * count or 2 * count != len(dst):
        raise ValueError(f"cannot store {len(dst)} directed pairs ({count} in the first direction) "
                         f"in halves of {size} slots")
    half = size // 2
    out_dst = np.full(size, pad_index, dtype=np.int32)
    out_src = np.full(size, pad_index, dtype=np.int32)
    mask = np.zeros(size, dtype=bool)
    first_dst, first_src = np.asarray(dst)[forward], np.asarray(src)[forward]
    out_dst[:count], out_src[:count] = first_dst, first_src
    out_dst[half:half + count], out_src[half:half + count] = first_src, first_dst
    mask[:count] = mask[half:half + count] = True
    out_shifts = None
    if shifts is not None:
        out_shifts = np.zeros((size, 3), dtype=dtype)
        first_shifts = np.asarray(shifts)[forward].astype(dtype)
        out_shifts[:count] = first_shifts
        out_shifts[half:half + count] = -first_shifts
    return out_dst, out_src, mask, out_shifts
