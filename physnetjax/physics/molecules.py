"""Sums of per-atom or per-pair quantities over the molecules of a batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sum_per_molecule(values, segments, num_molecules: int):
    r"""S_b = Σ_{i: segments[i] = b} values[i] for b = 0 … B−1 (a segment sum over the leading axis).

    With one molecule (B = 1, e.g. every MD or calculator call) this is a plain sum, one
    XLA kernel; a segment sum is a scatter, which XLA CPU runs as three (fill, copy,
    scatter), and the sum's gradient is a broadcast instead of a gather. Same result
    either way, since every index is then 0.

    Args:
      values: (M, ...) per-atom or per-pair values (zero on padding).
      segments: (M,) molecule index of each entry, in [0, B).
      num_molecules: static number of molecules B.

    Returns:
      (B, ...) sums.
    """
    if num_molecules == 1:
        return jnp.sum(values, axis=0, keepdims=True)
    return jax.ops.segment_sum(values, segments, num_segments=num_molecules)
