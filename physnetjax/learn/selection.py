"""Which MD frames to label: the most uncertain ones that are not near-copies of each other.

Criterion (greedy, uncertainty first, with an RMSD exclusion radius):

1. Rank the candidate frames by their ensemble spread s_j = max_i ‖σ_F,i‖ (eV/Å, the
   largest per-atom force spread the MD recorded), largest first; ties keep the
   candidates' order.
2. Walk down the ranking and accept frame j unless it lies within ``min_rmsd`` Å of a
   frame already accepted, where the distance of two frames of the same molecule
   (same atomic numbers in the same order) is their RMSD after optimal superposition
   (:func:`aligned_rmsd`); frames of different molecules are never within the radius.
3. Stop after ``count`` accepted frames (fewer when the candidates run out).

Consecutive MD frames are strongly correlated, so the top of a plain spread ranking is
usually one excursion sampled many times; the radius spreads the labelling budget over
distinct regions while still taking the most uncertain frame of each. The result is
the subset, of those that respect the radius, whose spreads sorted in decreasing order
are lexicographically largest (each accepted frame is the most uncertain one still
allowed).
"""

from __future__ import annotations

import numpy as np


def aligned_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD (Å) of (n, 3) positions ``a`` and ``b`` after the best rotation and translation (Kabsch).

    Both are centred on their centroids (unit weights); with H = a_cᵀ b_c = U S Vᵀ and
    d = sign(det(V Uᵀ)), the minimum over proper rotations is
    RMSD² = (‖a_c‖² + ‖b_c‖² − 2 (s₁ + s₂ + d s₃)) / n, clipped at 0 against round-off.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"aligned_rmsd needs two (n, 3) arrays of the same shape, received {a.shape} and {b.shape}")
    a_c = a - a.mean(axis=0)
    b_c = b - b.mean(axis=0)
    u, s, vt = np.linalg.svd(a_c.T @ b_c)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    squared = (np.sum(a_c**2) + np.sum(b_c**2) - 2.0 * (s[0] + s[1] + d * s[2])) / len(a)
    return float(np.sqrt(max(squared, 0.0)))


def select_uncertain_diverse(spreads, positions: list, numbers: list, count: int, min_rmsd: float) -> list[int]:
    """Indices of the selected candidates, in the order accepted (module docstring).

    Args:
      spreads: (M,) max per-atom force spread of each candidate, eV/Å, finite.
      positions: M arrays (n_j, 3) in Å.
      numbers: M arrays (n_j,) of atomic numbers.
      count: how many frames to select (≥ 1).
      min_rmsd: exclusion radius in Å (> 0, so an exact copy of a selected frame is never selected).

    Raises:
      ValueError: lengths differ, a spread is not finite, count < 1 or min_rmsd <= 0.
    """
    spreads = np.asarray(spreads, np.float64)
    if not len(spreads) == len(positions) == len(numbers):
        raise ValueError(f"spreads, positions and numbers must have one entry per candidate, received "
                         f"{len(spreads)}, {len(positions)}, {len(numbers)}")
    if not np.all(np.isfinite(spreads)):
        raise ValueError(f"candidate spreads must be finite, received {spreads[~np.isfinite(spreads)][:5]}")
    if count < 1:
        raise ValueError(f"count must be >= 1, received {count}")
    if not min_rmsd > 0:
        raise ValueError(f"min_rmsd must be > 0 Å, received {min_rmsd}")
    chosen: list[int] = []
    for j in np.argsort(-spreads, kind="stable"):
        if len(chosen) == count:
            break
        if all(not _same_molecule(numbers[j], numbers[k]) or aligned_rmsd(positions[j], positions[k]) >= min_rmsd
               for k in chosen):
            chosen.append(int(j))
    return chosen


def _same_molecule(a, b) -> bool:
    return len(a) == len(b) and bool(np.all(np.asarray(a) == np.asarray(b)))

