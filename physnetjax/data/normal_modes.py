"""Normal-mode sampling: random geometries around a minimum from its Hessian (classical Boltzmann).

In the harmonic approximation about a minimum R₀ with Hessian H (eV/Å²) and masses
m_i (amu), the mass-weighted Hessian H̃ = M^{-1/2} H M^{-1/2} has eigenpairs
(λ_k, e_k). Its vibrational modes (all but the ``num_rigid`` eigenvalues closest to
zero: 6 translations and rotations, 5 for a linear molecule) have λ_k > 0 at a
minimum, and the classical Boltzmann distribution at temperature T is a product of
Gaussians in the mass-weighted normal coordinates::

    Q_k ~ N(0, k_B T / λ_k)        (Å·√amu)
    ΔR  = M^{-1/2} Σ_k Q_k e_k     (Å)

so every vibration carries ⟨½ λ_k Q_k²⟩ = ½ k_B T of potential energy and the
harmonic energy ½ ΔRᵀ H ΔR averages (M_vib / 2) k_B T over M_vib modes. Frames drawn
this way sample the neighbourhood of the minimum (where harmonic frequencies are
decided) far more densely than high-temperature MD, which spends little time there
in soft modes such as torsions.
"""

from __future__ import annotations

import numpy as np

from physnetjax.units import BOLTZMANN


def vibrational_modes(hessian, masses, num_rigid: int = 6):
    """Eigenvalues λ_k (eV/(Å²·amu)) and mass-weighted eigenvectors e_k of the vibrations.

    Args:
      hessian: (3N, 3N) eV/Å², row/column 3i + a (symmetrised here).
      masses: (N,) amu.
      num_rigid: how many eigenvalues closest to zero are rigid-body motions (6, or 5
        for a linear molecule).

    Returns:
      (λ (M,), e (3N, M)) with M = 3N − num_rigid, sorted by λ ascending.

    Raises:
      ValueError: shapes that do not match, non-finite entries, masses ≤ 0, or a
        vibrational eigenvalue ≤ 0 (the geometry is not a minimum).
    """
    masses = np.asarray(masses, dtype=np.float64)
    hessian = np.asarray(hessian, dtype=np.float64)
    size = 3 * masses.shape[0]
    if masses.ndim != 1 or hessian.shape != (size, size):
        raise ValueError(f"hessian must have shape (3N, 3N) = ({size}, {size}) for {masses.shape[0]} masses, "
                         f"received {hessian.shape}")
    if not (np.isfinite(hessian).all() and np.isfinite(masses).all() and (masses > 0).all()):
        raise ValueError("hessian and masses must be finite and masses > 0")
    if not 0 <= num_rigid < size:
        raise ValueError(f"num_rigid must be in [0, {size}), received {num_rigid}")
    inv_sqrt_m = np.repeat(masses**-0.5, 3)
    weighted = inv_sqrt_m[:, None] * (0.5 * (hessian + hessian.T)) * inv_sqrt_m[None, :]
    eigenvalues, vectors = np.linalg.eigh(weighted)
    vibrations = np.sort(np.argsort(np.abs(eigenvalues))[num_rigid:])
    eigenvalues, vectors = eigenvalues[vibrations], vectors[:, vibrations]
    if eigenvalues[0] <= 0:
        raise ValueError(
            f"the Hessian has a vibrational eigenvalue {eigenvalues[0]:.3e} eV/(Å²·amu) <= 0: the geometry is not "
            "a minimum but a saddle point; a relaxation from a symmetric start (planar NH3, eclipsed ethane) keeps "
            "the symmetry and can stop there: start from a slightly distorted geometry"
        )
    return eigenvalues, vectors


def normal_mode_displacements(hessian, masses, temperature: float, count: int, rng: np.random.Generator,
                              num_rigid: int = 6) -> np.ndarray:
    """``count`` Cartesian displacements ΔR drawn from the harmonic Boltzmann distribution (module docstring).

    Args:
      hessian: (3N, 3N) eV/Å² at a minimum.  masses: (N,) amu.
      temperature: T > 0 in K.  count: number of samples ≥ 1.
      rng: NumPy random generator.  num_rigid: see :func:`vibrational_modes`.

    Returns:
      (count, N, 3) float64 displacements in Å, to add to the minimum geometry.

    Raises:
      ValueError: T ≤ 0, count < 1, or the conditions of :func:`vibrational_modes`.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 K, received {temperature}")
    if count < 1:
        raise ValueError(f"count must be >= 1, received {count}")
    eigenvalues, vectors = vibrational_modes(hessian, masses, num_rigid)
    masses = np.asarray(masses, dtype=np.float64)
    coordinates = rng.standard_normal((count, eigenvalues.shape[0])) * np.sqrt(BOLTZMANN * temperature / eigenvalues)
    weighted = coordinates @ vectors.T
    return (weighted * np.repeat(masses**-0.5, 3)).reshape(count, masses.shape[0], 3)
