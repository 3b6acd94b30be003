"""How far a free molecule's rotation spreads its vibrational bands in a classical MD spectrum.

In gas-phase MD (:func:`physnetjax.spectra.md_spectrum`) the molecule rotates while it vibrates:
a dipole or velocity component vibrating at ω and turning at angular velocity Ω about an axis
perpendicular to it appears at ω ± Ω, so each band becomes a rotational contour (P and R
branches, no sharp Q branch for a parallel band) rather than a line at ω. Classically the angular
velocity about principal axis a is Gaussian with variance ⟨Ω_a²⟩ = k_B T / I_a, so the contour
spans about ω ± 3 σ_rot with

    σ_rot = √(k_B T / I_min) / (2π c)    (cm⁻¹),

I_min the smallest non-zero principal moment of inertia (the fastest rotation; a linear
molecule's moment about its axis is zero and carries no rotation). Beyond 3 σ_rot lies
e^{−9/2} ≈ 1 % of a contour ∝ |Ω| e^{−I Ω² / 2 k_B T}. Water (I_min = 0.64 amu Å², ASE's
geometry) at 300 K: σ_rot = 105 cm⁻¹, a contour ±315 cm⁻¹ wide; CO2 (41.9 amu Å²): 13 cm⁻¹.
"""

from __future__ import annotations

import math

import numpy as np

from physnetjax.units import AMU_A2_PER_FS2_IN_EV, BOLTZMANN, SPEED_OF_LIGHT_CM_PER_FS

CONTOUR_SIGMAS = 3.0
"""Half-width of a rotational contour in units of σ_rot (≈ 99 % of its area inside)."""

ZERO_MOMENT_SHARE = 1e-8
"""A principal moment below this share of the largest is zero (the axis of a linear molecule)."""


def principal_moments(masses, positions) -> np.ndarray:
    """Principal moments of inertia (3,) in amu Å², ascending, about the centre of mass.

    Args:
      masses: (N,) amu. positions: (N, 3) Å.
    """
    m = np.asarray(masses, np.float64)
    r = np.asarray(positions, np.float64)
    r = r - m @ r / m.sum()
    tensor = np.einsum("i,ij,ik->jk", m, r, r)
    inertia = np.trace(tensor) * np.eye(3) - tensor
    return np.clip(np.linalg.eigvalsh(inertia), 0.0, None)


def rotational_sigma_cm1(masses, positions, temperature_K: float) -> float:
    """σ_rot = √(k_B T / I_min) / (2π c) in cm⁻¹ (module docstring); 0 for a single atom.

    Args:
      masses: (N,) amu. positions: (N, 3) Å. temperature_K: T ≥ 0.
    """
    moments = principal_moments(masses, positions)
    rotating = moments[moments > ZERO_MOMENT_SHARE * moments[-1]] if moments[-1] > 0.0 else moments[:0]
    if rotating.size == 0:
        return 0.0
    omega_per_fs = math.sqrt(BOLTZMANN * temperature_K / AMU_A2_PER_FS2_IN_EV / rotating[0])
    return omega_per_fs / (2.0 * math.pi * SPEED_OF_LIGHT_CM_PER_FS)


def rotational_contour_cm1(masses, positions, temperature_K: float) -> float:
    """Half-width :data:`CONTOUR_SIGMAS` × σ_rot (cm⁻¹) of a band's rotational contour (module docstring)."""
    return CONTOUR_SIGMAS * rotational_sigma_cm1(masses, positions, temperature_K)
