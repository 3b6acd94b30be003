"""Rigid-body motions of a molecule in mass-weighted Cartesian coordinates.

For atoms at r_i (Å) with masses m_i (amu), centre of mass c = Σ m_i r_i / M and
inertia tensor I = Σ_i m_i (|r_i − c|² 𝟙 − (r_i − c)(r_i − c)ᵀ) (amu·Å²), the
mass-weighted (q_i = √m_i x_i) displacement of

* a translation along unit vector e is √m_i e,
* a rotation about a principal axis p (through c) is √m_i p × (r_i − c), whose
  squared norm is the principal moment I_p.

These are mutually orthogonal. A molecule is *linear* when its smallest principal
moment is at most ``tolerance`` × its largest (default :data:`LINEAR_TOLERANCE` =
1e-4): then the rotation about the molecular axis moves nothing and is dropped,
leaving 5 rigid-body motions (6 otherwise). The tolerance is relative so that it
does not depend on the size or masses of the molecule; 1e-4 keeps every non-linear
molecule non-linear (methylacetylene, a slender symmetric top, has a moment ratio of
5e-2), while CO2 with its carbon moved 0.02 Å off the O–O line (a ratio of 8.7δ²/43.6
amu·Å² = 0.8e-4) still counts as linear.
"""

from __future__ import annotations

import numpy as np

LINEAR_TOLERANCE = 1e-4
"""Largest ratio I_min / I_max of principal moments for which a molecule is linear."""


def principal_moments(positions, masses) -> tuple[np.ndarray, np.ndarray]:
    """Principal moments (3,) ascending in amu·Å² and axes (3, 3) as columns, about the centre of mass.

    Args:
      positions: (N, 3) Å.  masses: (N,) amu.
    """
    positions = np.asarray(positions, dtype=np.float64)
    masses = np.asarray(masses, dtype=np.float64)
    centred = positions - masses @ positions / masses.sum()
    inertia = (np.eye(3) * np.sum(masses * np.sum(centred**2, axis=1))
               - np.einsum("i,ia,ib->ab", masses, centred, centred))
    return np.linalg.eigh(inertia)


def is_linear(positions, masses, tolerance: float = LINEAR_TOLERANCE) -> bool:
    """True when I_min ≤ tolerance · I_max (all atoms on one line, within the tolerance)."""
    moments, _ = principal_moments(positions, masses)
    return bool(moments[0] <= tolerance * moments[2])


def rigid_body_basis(positions, masses, linear: bool) -> np.ndarray:
    """Orthonormal mass-weighted rigid-body displacements, (3N, 6) or (3N, 5) when ``linear``.

    Columns: the three translations, then the rotations about the principal axes
    (without the axis of the smallest moment for a linear molecule), each normalised.
    Row 3i + a is atom i, Cartesian direction a.
    """
    positions = np.asarray(positions, dtype=np.float64)
    masses = np.asarray(masses, dtype=np.float64)
    sqrt_m = np.sqrt(masses)
    centred = positions - masses @ positions / masses.sum()
    _, axes = principal_moments(positions, masses)
    rotation_axes = axes.T[1:] if linear else axes.T
    translations = [np.outer(sqrt_m, unit).ravel() for unit in np.eye(3)]
    rotations = [(sqrt_m[:, None] * np.cross(axis, centred)).ravel() for axis in rotation_axes]
    basis = np.stack(translations + rotations, axis=1)
    return basis / np.linalg.norm(basis, axis=0)
