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
Cost: O(Σ_i n_i²) on the host for n_i neighbours of atom i within the cutoff.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def pair_triplets(pair_dst, pair_mask) -> np.ndarray:
    """All pairs-of-pairs (p, q), p < q, of real pairs sharing their first atom; NumPy (T, 2) int32.

    Args:
      pair_dst: (P,) first atom i of each pair; pair_mask: (P,) bool, pairs that may
        take part (padded pairs and pairs beyond the cutoff: False).
    """
    dst = np.asarray(pair_dst)
    real = np.flatnonzero(np.asarray(pair_mask, dtype=bool))
    order = real[np.argsort(dst[real], kind="stable")]
    groups = np.split(order, np.flatnonzero(np.diff(dst[order])) + 1)
    parts = []
    for group in groups:
        if group.size < 2:
            continue
        a, b = np.triu_indices(group.size, k=1)
        parts.append(np.stack([group[a], group[b]], axis=1))
    if not parts:
        return np.zeros((0, 2), dtype=np.int32)
    return np.concatenate(parts).astype(np.int32)


def padded_triplets(pair_dst, pair_mask, pair_vectors, cutoff: float,
                    num_triplets: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Triplets of pairs shorter than ``cutoff``, padded: ((T, 2) int32, (T,) bool mask).

    Args:
      pair_dst: (P,) first atom of each pair (padded pair list).
      pair_mask: (P,) bool, True for real pairs.
      pair_vectors: (P, 3) Å, r_src − r_dst + shift at the current positions.
      cutoff: three-body cutoff in Å (``inf``: every pair-of-pairs of the list, valid
        for any positions the pair list is valid for).
      num_triplets: padded size T (None → exact, at least 1).

    Padded triplets point at pair P − 1 twice and have mask False.

    Raises:
      ValueError: ``num_triplets`` smaller than the number of triplets (no truncation).
    """
    mask = np.asarray(pair_mask, dtype=bool)
    if np.isfinite(cutoff):
        mask = mask & (np.linalg.norm(np.asarray(pair_vectors, dtype=np.float64), axis=-1) < cutoff)
    triplets = pair_triplets(pair_dst, mask)
    needed = triplets.shape[0]
    size = max(needed, 1) if num_triplets is None else num_triplets
    if size < needed:
        raise ValueError(f"num_triplets={num_triplets} is smaller than the {needed} required; refusing to truncate")
    out = np.full((size, 2), max(len(mask) - 1, 0), dtype=np.int32)
    out[:needed] = triplets
    return out, np.arange(size) < needed


def count_triplets(pair_dst, pair_mask, pair_vectors, cutoff: float) -> int:
    """Number of triplets :func:`padded_triplets` would list (Σ_i n_i (n_i − 1) / 2)."""
    mask = np.asarray(pair_mask, dtype=bool)
    if np.isfinite(cutoff):
        mask = mask & (np.linalg.norm(np.asarray(pair_vectors, dtype=np.float64), axis=-1) < cutoff)
    counts = np.bincount(np.asarray(pair_dst)[mask])
    return int(np.sum(counts * (counts - 1) // 2))
