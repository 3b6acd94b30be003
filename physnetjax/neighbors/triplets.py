"""Host-side triplet lists for three-body terms (the ATM term of D3 dispersion).

A *triplet* is a pair of pair-list indices (p, q), p < q, of two pairs that share
their first atom i (p: i → j, q: i → k). Each triangle (i, j, k) of a full pair list
appears once per vertex, i.e. three times, so a triplet sum carries a factor ⅓
(:func:`physnetjax.physics.dispersion.d3_dispersion_energy`). The third side is the
difference of the two pair vectors (r_k − r_j + shifts), so periodic images need no
extra bookkeeping.

Triplets are built from the *pair list the model's pair terms use* (``pair_*`` when
a batch has one, else the edge list), restricted to pairs shorter than the three-body
cutoff at the positions given; pairs beyond it are switched off anyway, so leaving
them out changes nothing. The list is padded to a static size like every other list;
a requested size smaller than needed raises ValueError (never drops a triangle).
Cost: O(Σ_i n_i²) on the host for n_i neighbours of atom i within the cutoff, in time
and in memory (:data:`BYTES_PER_TRIPLET` each: 1.7 GB for the 1.9e8 of a dense 192-atom
water box at 15 Å); the list is written in place into one array, after its size has been
checked against the host's free memory (OutOfMemoryError where it would not fit, rather
than the kernel killing the process).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from physnetjax.device_memory import check_host_fits
from physnetjax.physics.dispersion import ATM_CHUNK_TRIANGLES


BYTES_PER_TRIPLET = 9
"""Host memory of one listed triplet: two int32 pair indices and its bool mask entry."""


def three_body_remedy(cutoff: Optional[float] = None) -> str:
    """What to change when a D3 model's three-body (ATM) triangles fill the memory; ``cutoff``: its cutoff in Å,
    where known."""
    known = "" if cutoff is None or not np.isfinite(cutoff) else f" ({cutoff:g} Å)"
    return (f"the D3 three-body (ATM) term's triangles grow with the cube of its cutoff{known}: use the model "
            "without it (model.clone(dispersion_three_body=False)), or a shorter dispersion_cutoff, for a system "
            "this dense")


def triplet_slots(count: int, multiple: int = 1) -> int:
    """Slots of a padded list for ``count`` triplets: a multiple of ``multiple`` (at least one), rounded up to whole
    chunks of :data:`~physnetjax.physics.dispersion.ATM_CHUNK_TRIANGLES` beyond one chunk, so that the chunked ATM
    sum reads the list as it is instead of a padded copy (1.7 GB less for the 1.9e8 of a dense 192-atom box)."""
    slots = max(multiple, -(-int(count) // multiple) * multiple)
    return slots if slots <= ATM_CHUNK_TRIANGLES else -(-slots // ATM_CHUNK_TRIANGLES) * ATM_CHUNK_TRIANGLES


def pair_triplets(pair_dst, pair_mask) -> np.ndarray:
    """All pairs-of-pairs (p, q), p < q, of real pairs sharing their first atom; NumPy (T, 2) int32.

    Args:
      pair_dst: (P,) first atom i of each pair; pair_mask: (P,) bool, pairs that may
        take part (padded pairs and pairs beyond the cutoff: False).

    Raises:
      OutOfMemoryError: the list would not fit the host's free memory (checked before it is built).
    """
    groups = _groups_by_first_atom(pair_dst, pair_mask)
    needed = _count(groups)
    return _fill_triplets(groups, _allocate(needed, needed, 0, None))


def _groups_by_first_atom(pair_dst, pair_mask) -> list[np.ndarray]:
    """Indices of the real pairs, one array per first atom (in pair-list order within each)."""
    dst = np.asarray(pair_dst)
    real = np.flatnonzero(np.asarray(pair_mask, dtype=bool))
    order = real[np.argsort(dst[real], kind="stable")]
    return np.split(order, np.flatnonzero(np.diff(dst[order])) + 1)


def _count(groups) -> int:
    """Pairs-of-pairs of the groups: Σ n (n − 1) / 2."""
    return sum(group.size * (group.size - 1) // 2 for group in groups)


def _allocate(needed: int, size: int, fill: int, cutoff: Optional[float]) -> np.ndarray:
    """A (size, 2) int32 array filled with ``fill`` for ``needed`` triplets, once the host has room for it and its
    mask (``cutoff``: the three-body cutoff in Å the message names, where known).

    Raises:
      ValueError: ``size`` smaller than the number of triplets (no truncation).
      OutOfMemoryError: the list would not fit the host's free memory.
    """
    if size < needed:
        raise ValueError(f"num_triplets={size} is smaller than the {needed} required; refusing to truncate")
    check_host_fits(size * BYTES_PER_TRIPLET, f"building the D3 three-body (ATM) list of {needed} pairs of "
                                              f"neighbor pairs sharing an atom ({size} slots)",
                    three_body_remedy(cutoff))
    return np.full((size, 2), fill, dtype=np.int32)


def _upper_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (a, b), 0 ≤ a < b < n, row by row (``np.triu_indices(n, k=1)`` without its n × n mask)."""
    a = np.repeat(np.arange(n - 1), np.arange(n - 1, 0, -1))
    row_start = np.concatenate([[0], np.cumsum(np.arange(n - 1, 0, -1))])
    return a, np.arange(a.size) - row_start[a] + a + 1


CACHED_GROUP_SIZE = 256
"""Groups up to this many pairs reuse the index pattern of their size within one list (a molecule's atoms share a
few sizes); larger ones, each ~n² / 2 int64 pairs, build their own."""


def _fill_triplets(groups, out: np.ndarray) -> np.ndarray:
    """Write the groups' pairs-of-pairs into the first rows of ``out``, group by group; returns ``out``."""
    start, upper = 0, {}
    for group in groups:
        if group.size < 2:
            continue
        if group.size > CACHED_GROUP_SIZE:
            a, b = _upper_pairs(group.size)
        else:
            if group.size not in upper:
                upper[group.size] = _upper_pairs(group.size)
            a, b = upper[group.size]
        out[start:start + a.size, 0] = group[a]
        out[start:start + a.size, 1] = group[b]
        start += a.size
    return out


def padded_triplets(pair_dst, pair_mask, pair_vectors, cutoff: float,
                    num_triplets: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Triplets of pairs shorter than ``cutoff``, padded: ((T, 2) int32, (T,) bool mask).

    Args:
      pair_dst: (P,) first atom of each pair (padded pair list).
      pair_mask: (P,) bool, True for real pairs.
      pair_vectors: (P, 3) Å, r_src − r_dst + shift at the current positions.
      cutoff: three-body cutoff in Å (``inf``: every pair-of-pairs of the list, valid
        for any positions the pair list is valid for).
      num_triplets: padded size T (None → :func:`triplet_slots` of the triplets found).

    Padded triplets point at pair P − 1 twice and have mask False.

    Raises:
      ValueError: ``num_triplets`` smaller than the number of triplets (no truncation).
      OutOfMemoryError: the list would not fit the host's free memory (checked before it is built).
    """
    mask = np.asarray(pair_mask, dtype=bool)
    if np.isfinite(cutoff):
        mask = mask & (np.linalg.norm(np.asarray(pair_vectors, dtype=np.float64), axis=-1) < cutoff)
    groups = _groups_by_first_atom(pair_dst, mask)
    needed = _count(groups)
    out = _allocate(needed, triplet_slots(needed) if num_triplets is None else num_triplets, max(len(mask) - 1, 0),
                    cutoff)
    real = np.zeros(len(out), dtype=bool)
    real[:needed] = True
    return _fill_triplets(groups, out), real


def count_triplets(pair_dst, pair_mask, pair_vectors, cutoff: float) -> int:
    """Number of triplets :func:`padded_triplets` would list (Σ_i n_i (n_i − 1) / 2)."""
    mask = np.asarray(pair_mask, dtype=bool)
    if np.isfinite(cutoff):
        mask = mask & (np.linalg.norm(np.asarray(pair_vectors, dtype=np.float64), axis=-1) < cutoff)
    counts = np.bincount(np.asarray(pair_dst)[mask])
    return int(np.sum(counts * (counts - 1) // 2))
