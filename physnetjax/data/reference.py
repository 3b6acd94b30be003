"""Per-element reference energies E0 fitted by least squares in float64.

E_b ≈ Σ_Z c_bZ E0[Z], with c_bZ the number of atoms of element Z in frame b. The
trainer fits E0 on the training split, trains on E_b − Σ_Z c_bZ E0[Z] (computed
in float64 *before* any cast to float32: absolute energies of ~10⁴ eV have a
float32 ulp of ~1e-3 eV) and stores E0 in the saved model's ``element_energies``.
"""

from __future__ import annotations

import numpy as np


def element_counts(Z: np.ndarray, max_atomic_number: int) -> np.ndarray:
    """(M, max_atomic_number + 1) float64 counts c_bZ of each element per frame (padding Z=0 excluded)."""
    Z = np.asarray(Z)
    counts = np.zeros((Z.shape[0], max_atomic_number + 1))
    rows = np.repeat(np.arange(Z.shape[0]), Z.shape[1])
    np.add.at(counts, (rows, Z.reshape(-1)), 1.0)
    counts[:, 0] = 0.0
    return counts


def fit_element_energies(Z: np.ndarray, E: np.ndarray, max_atomic_number: int,
                         mask: np.ndarray | None = None) -> np.ndarray:
    """Least-squares E0 (max_atomic_number + 1,) float64 in eV; 0 for absent elements.

    Args:
      Z: (M, n) atomic numbers, 0 = padding.
      E: (M,) energies in eV (float64).
      max_atomic_number: size of the returned table minus one.
      mask: (M,) bool, frames whose energy is known (None → all).

    When the compositions do not determine E0 uniquely (e.g. a single molecule,
    where only Σ_Z c_Z E0[Z] is fixed), the minimum-norm solution is returned; the
    shifted energies are the same for every solution on compositions in the span.

    Raises:
      ValueError: no frame with a known energy, or an atomic number above max_atomic_number.
    """
    Z = np.asarray(Z)
    E = np.asarray(E, dtype=np.float64)
    if mask is not None:
        Z, E = Z[np.asarray(mask, bool)], E[np.asarray(mask, bool)]
    if E.size == 0:
        raise ValueError("cannot fit reference energies: no frame has an energy")
    if Z.max() > max_atomic_number:
        raise ValueError(f"atomic number {int(Z.max())} exceeds max_atomic_number={max_atomic_number}")
    counts = element_counts(Z, max_atomic_number)
    present = np.nonzero(counts.any(axis=0))[0]
    solution, *_ = np.linalg.lstsq(counts[:, present], E, rcond=None)
    e0 = np.zeros(max_atomic_number + 1)
    e0[present] = solution
    return e0


def shifted_energies(Z: np.ndarray, E: np.ndarray, element_energies: np.ndarray) -> np.ndarray:
    """E_b − Σ_i E0[Z_i] in float64 (M,), eV."""
    e0 = np.asarray(element_energies, dtype=np.float64)
    return np.asarray(E, dtype=np.float64) - element_counts(Z, len(e0) - 1) @ e0
