"""Physical validity of an MD frame: same bonded topology as a reference, no two atoms too close.

Bonds: atoms i, j are bonded when

    r_ij < bond_factor · (ρ_i + ρ_j)

with ρ the covalent radii of ASE (``ase.data.covalent_radii``, Cordero et al. 2008, Å)
and ``bond_factor`` 1.3 by default (for ethanol: C–H bonded below 1.39 Å, thermal
C–H ≈ 1.09 ± 0.05 Å at 800 K; the closest non-bonded pair, geminal H···H ≈ 1.78 Å,
would need < 0.81 Å). A frame is unphysical when its bond set differs from the
reference's (a bond broken or formed: dissociation, a new bond) or when its closest
pair is nearer than ``min_distance`` Å (0.5 by default: no labeller gives a
meaningful energy there). Units: Å throughout.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from physnetjax.validation import covalent_distance_ratios

DEFAULT_BOND_FACTOR = 1.3
DEFAULT_MIN_DISTANCE = 0.5


def bonds(numbers: np.ndarray, positions: np.ndarray, bond_factor: float = DEFAULT_BOND_FACTOR) -> np.ndarray:
    """(n, n) bool adjacency: r_ij < bond_factor · (ρ_i + ρ_j), no self-bonds; ``positions`` (n, 3) Å."""
    return covalent_distance_ratios(numbers, positions) < bond_factor


def unphysical_reason(numbers: np.ndarray, positions: np.ndarray, reference_bonds: Optional[np.ndarray],
                      min_distance: float = DEFAULT_MIN_DISTANCE,
                      bond_factor: float = DEFAULT_BOND_FACTOR) -> Optional[str]:
    """Why the frame ((n,) numbers, (n, 3) Å) is unphysical, or None when it is valid.

    ``reference_bonds`` is :func:`bonds` of the reference structure (same atom order);
    None skips the topology check (only ``min_distance`` is applied).
    """
    positions = np.asarray(positions, np.float64)
    n = len(positions)
    if n >= 2:
        distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
        i, j = np.triu_indices(n, 1)
        k = int(np.argmin(distances[i, j]))
        if distances[i[k], j[k]] < min_distance:
            return (f"atoms {i[k]} and {j[k]} are {distances[i[k], j[k]]:.3g} Å apart "
                    f"(< min_distance {min_distance:g} Å)")
    if reference_bonds is None:
        return None
    if reference_bonds.shape != (n, n):
        raise ValueError(f"reference bonds are for {len(reference_bonds)} atoms, the frame has {n}")
    changed = np.argwhere(np.triu(bonds(numbers, positions, bond_factor) != reference_bonds, 1))
    if len(changed):
        a, b = changed[0]
        what = "broken" if reference_bonds[a, b] else "formed"
        return f"bond {a}-{b} {what} ({len(changed)} bond change(s) from the reference, bond_factor {bond_factor:g})"
    return None
