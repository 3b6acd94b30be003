"""Rigid-body motions of a molecule in mass-weighted Cartesian coordinates.

For atoms at r_i (Å) with masses m_i (amu), centre of mass c = Σ m_i r_i / M and
inertia tensor I = Σ_i m_i (|r_i − c|² 𝟙 − (r_i − c)(r_i − c)ᵀ) (amu·Å²), the
mass-weighted (q_i = √m_i x_i) displacement of

* a translation along unit vector e is √m_i e,
* a rotation about a principal axis p (through c) is √m_i p × (r_i − c), whose
  squared norm is the principal moment I_p.

These are mutually orthogonal. A molecule is *linear* when every atom lies within
``tolerance`` (default :data:`LINEAR_TOLERANCE` = 0.02 Å) of its axis, the line
through the centre of mass along the principal axis of the smallest moment: then
the rotation about that axis moves (almost) nothing and is dropped, leaving 5
rigid-body motions (6 otherwise). The tolerance is a length, so that neither the
extent of the system nor its masses change the verdict: a ratio I_min / I_max
(1e-4 before) called HCl with an H atom 130 Å off its axis linear (I_max grows as the
square of the distance, I_min does not), and a 12-carbon chain with an H 0.5 Å off
the axis too. 0.02 Å keeps every real non-linear molecule non-linear (the H atoms of
methylacetylene, a slender symmetric top, are 1.0 Å off its axis), while CO2 with its
carbon moved 0.02 Å off the O–O line (0.015 Å from the axis) still counts as linear,
as does the imperfect optimum of a floppy linear molecule.

A geometry made of *fragments* that do not interact (no atom of one within the
model's reach of another) has, besides the motions of the whole, zero-frequency
relative translations and rotations of the fragments: each fragment f has its own
n_f rigid-body motions (3 for a single atom, 5 if linear, 6 otherwise), so
Σ_f n_f − 6 (or − 5) of the 3N − 6 (3N − 5) modes left by the projection above are
not vibrations. :func:`fragments_within` and :func:`coupled_fragments` find the
fragments, :func:`fragment_rigid_body_basis` spans their motions.
"""

from __future__ import annotations

import numpy as np

from physnetjax.validation import check_range

LINEAR_TOLERANCE = 0.02
"""Å: largest distance of an atom from the molecule's axis for which the molecule is linear (:func:`is_linear`)."""
MIN_LINEAR_TOLERANCE = 1e-3
"""Å: the smallest ``linear_tolerance`` accepted (:func:`check_linear_tolerance`). Below it the verdict on a linear
molecule can turn on the round-off of its positions (a rotated molecule written with 6 decimals: up to ~1e-6 Å off
its axis; the shipped CO2 model optimised from a bent start to max |F| <= 1e-3 eV/Å: 3e-6 Å). Called non-linear,
its rotation about its own axis, a motion of the length of that round-off, is normalised and projected out as a
rigid-body motion although it is a bend, and a vibration is lost without a word (a rotated linear XY2 with tolerance 0:
3 modes, one bend missing and the symmetric stretch 1.6 cm⁻¹ off)."""
COUPLING_TOLERANCE = 1e-12
"""Atoms i ≠ j are coupled when max |H_ij| > this × max |H| (the 3 × 3 Hessian block, relative).

An autodiff Hessian of a model with a finite reach has exact zeros between atoms out of
reach; a Coulomb pair of 0.1 e charges 50 Å apart couples by 2 k_e q² / r³ ≈ 2e-6 eV/Å²,
~1e-7 of a bond's 30 eV/Å²."""


def check_linear_tolerance(tolerance) -> float:
    """``tolerance`` (Å) as a float; PhysNetInputError unless finite and >= :data:`MIN_LINEAR_TOLERANCE`."""
    check_range("linear_tolerance", tolerance, "Å", MIN_LINEAR_TOLERANCE)
    return float(tolerance)


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


def axis_distance(positions, masses) -> float:
    """Largest distance (Å) of an atom from the line through the centre of mass along the axis of the smallest
    principal moment (0 for atoms on one line).

    Args:
      positions: (N, 3) Å.  masses: (N,) amu.
    """
    positions = np.asarray(positions, dtype=np.float64)
    masses = np.asarray(masses, dtype=np.float64)
    centred = positions - masses @ positions / masses.sum()
    _, axes = principal_moments(positions, masses)
    along = centred @ axes[:, 0]
    return float(np.linalg.norm(centred - along[:, None] * axes[:, 0], axis=1).max())


def is_linear(positions, masses, tolerance: float = LINEAR_TOLERANCE) -> bool:
    """True when every atom lies within ``tolerance`` (Å) of the molecule's axis (:func:`axis_distance`)."""
    return axis_distance(positions, masses) <= tolerance


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


def fragment_rigid_body_basis(positions, masses, fragments, tolerance: float = LINEAR_TOLERANCE) -> np.ndarray:
    """Orthonormal mass-weighted rigid-body displacements of each fragment on its own, (3N, Σ_f n_f).

    The columns of fragment f are :func:`rigid_body_basis` of its atoms (n_f = 5 when
    they are linear within ``tolerance`` Å, else 6), or its 3 translations for a single
    atom, and zero on the other atoms. Fragments share no atom, so all columns are
    orthonormal.

    Args:
      positions: (N, 3) Å.  masses: (N,) amu.
      fragments: sequence of atom-index arrays that partition range(N).
    """
    positions = np.asarray(positions, dtype=np.float64)
    masses = np.asarray(masses, dtype=np.float64)
    columns = []
    for atoms in fragments:
        atoms = np.asarray(atoms)
        if atoms.size == 1:
            local = np.eye(3)
        else:
            linear = is_linear(positions[atoms], masses[atoms], tolerance)
            local = rigid_body_basis(positions[atoms], masses[atoms], linear)
        block = np.zeros((positions.shape[0], 3, local.shape[1]))
        block[atoms] = local.reshape(atoms.size, 3, -1)
        columns.append(block.reshape(3 * positions.shape[0], -1))
    return np.concatenate(columns, axis=1)


def fragments_within(positions, cutoff: float) -> list[np.ndarray]:
    """Fragments of atoms linked by distances below ``cutoff`` (Å): connected components, in atom order."""
    positions = np.asarray(positions, dtype=np.float64)
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    return connected_components(distances < cutoff)


def coupled_fragments(hessian, tolerance: float = COUPLING_TOLERANCE) -> list[np.ndarray]:
    """Fragments of atoms coupled by the Hessian ((3N, 3N), see :data:`COUPLING_TOLERANCE`), in atom order."""
    hessian = np.asarray(hessian, dtype=np.float64)
    num_atoms = hessian.shape[0] // 3
    blocks = np.abs(hessian.reshape(num_atoms, 3, num_atoms, 3)).max(axis=(1, 3))
    return connected_components(blocks > tolerance * blocks.max())


def connected_components(adjacency) -> list[np.ndarray]:
    """Connected components of the graph with (N, N) symmetric boolean ``adjacency``.

    Returns sorted atom-index arrays, ordered by their first atom.
    """
    adjacency = np.asarray(adjacency, dtype=bool)
    labels = np.full(adjacency.shape[0], -1)
    components = []
    for start in range(adjacency.shape[0]):
        if labels[start] >= 0:
            continue
        labels[start] = len(components)
        frontier = [start]
        while frontier:
            neighbours = np.nonzero(adjacency[frontier].any(axis=0) & (labels < 0))[0]
            labels[neighbours] = len(components)
            frontier = neighbours.tolist()
        components.append(np.nonzero(labels == len(components))[0])
    return components
