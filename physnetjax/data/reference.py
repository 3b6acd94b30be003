"""Per-element reference energies E0 fitted by least squares in float64.

E_b ≈ Σ_Z c_bZ E0[Z], with c_bZ the number of atoms of element Z in frame b. The
trainer fits E0 on the training split, trains on E_b − Σ_Z c_bZ E0[Z] (computed
in float64 *before* any cast to float32: absolute energies of ~10⁴ eV have a
float32 ulp of ~1e-3 eV) and stores E0 in the saved model's ``element_energies``.

Degenerate compositions. When the compositions do not determine E0 (rank of the
count matrix C below the number of elements K; e.g. a data set of one molecule,
where only Σ_Z c_Z E0[Z] is fixed), the per-element split is arbitrary and the
plain minimum-norm solution makes E0 ∝ c (for ethanol E0[H] = −45 eV, twice as
low as E0[O]): nonsense for any other stoichiometry or a fine-tune. Then the fit
falls back to a prior p (default: the GFN2-xTB free-atom energies of
:mod:`physnetjax.data.atom_energies`) scaled by one factor λ fitted to the data,
plus the minimum-norm correction that reproduces the data exactly:

    λ = argmin ‖λ C p − E‖²,   E0 = λ p + C⁺ (E − λ C p)

For a single composition E0 = λ p: the molecule's energy split among its elements
in proportion to their isolated-atom energies. The shifted energies E − C E0 are
the same as with any other solution on the training compositions; only
predictions for other stoichiometries depend on the choice, which is logged as a
warning and recorded in the checkpoint metadata (``element_energies_fit``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Optional, Sequence

import numpy as np

from physnetjax.data.atom_energies import GFN2_XTB_ATOM_ENERGIES
from physnetjax.units import energy_factor
from physnetjax.validation import SYMBOLS

logger = logging.getLogger(__name__)


def parse_element_energy_prior(entries: Optional[Sequence[str]], energy_unit: str = "eV") -> Optional[dict]:
    """``["H=-13.6", "O=-2040.5"]`` (element symbol or atomic number = energy in ``energy_unit``) → ``{Z: eV}``, the
    ``prior`` of :func:`fit_reference_energies`; None for None or no entries.

    Raises:
      ValueError: an entry that is not ``ELEMENT=ENERGY``, an unknown element, an energy that is no finite number,
        an element given twice, or an unknown ``energy_unit``.
    """
    if not entries:
        return None
    factor = energy_factor(energy_unit)
    prior: dict[int, float] = {}
    for entry in entries:
        name, sep, value = str(entry).partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ValueError(f"element energy {entry!r}: give ELEMENT=ENERGY, e.g. H=-13.6 (in the energy unit)")
        z = int(name) if name.isdigit() else SYMBOLS.index(name) if name in SYMBOLS[1:] else None
        if z is None or not 0 < z < len(SYMBOLS):
            raise ValueError(f"element energy {entry!r}: {name!r} is no element (a symbol such as H or Cl, or an "
                             "atomic number)")
        try:
            energy = float(value)
        except ValueError:
            energy = math.nan
        if not math.isfinite(energy):
            raise ValueError(f"element energy {entry!r}: {value!r} is no finite number")
        if z in prior:
            raise ValueError(f"element energy {entry!r}: {SYMBOLS[z]} is given twice")
        prior[z] = energy * factor
    return prior


def element_counts(Z: np.ndarray, max_atomic_number: int) -> np.ndarray:
    """(M, max_atomic_number + 1) float64 counts c_bZ of each element per frame (padding Z=0 excluded)."""
    Z = np.asarray(Z)
    counts = np.zeros((Z.shape[0], max_atomic_number + 1))
    rows = np.repeat(np.arange(Z.shape[0]), Z.shape[1])
    np.add.at(counts, (rows, Z.reshape(-1)), 1.0)
    counts[:, 0] = 0.0
    return counts


@dataclasses.dataclass(frozen=True)
class ReferenceFit:
    """Fitted E0 and how they were chosen.

    Fields:
      energies: (max_atomic_number + 1,) float64 E0 in eV (0 for absent elements).
      elements: atomic numbers present in the fitted frames.
      rank: rank of the (frames × elements) count matrix; < len(elements) means degenerate.
      method: ``"least-squares"`` (determined), ``"prior-scaled"`` (degenerate: λ p + C⁺(E − λ C p))
        or ``"minimum-norm"`` (degenerate and no prior for some element).
      prior: name of the prior used (``"gfn2-xtb-atoms"``, ``"user"``) or None.
      scale: λ, or None.
      message: one line naming the degeneracy (empty when determined).
      basis: ``rank`` linearly independent training compositions, each the counts of the atoms of
        ``elements`` in one frame: their span holds the compositions whose Σ_Z n_Z E0[Z] the data
        fixed (every composition of ``elements`` when determined; see
        :func:`physnetjax.validation.check_reference_compositions`).
    """

    energies: np.ndarray
    elements: tuple
    rank: int
    method: str
    prior: str | None = None
    scale: float | None = None
    message: str = ""
    basis: tuple = ()

    @property
    def degenerate(self) -> bool:
        return self.rank < len(self.elements)

    def to_dict(self) -> dict:
        """JSON-serialisable summary (without the energies, which the model config holds)."""
        return {"method": self.method, "elements": [int(z) for z in self.elements], "rank": int(self.rank),
                "degenerate": self.degenerate, "prior": self.prior, "scale": self.scale, "message": self.message,
                "basis": [[int(n) for n in row] for row in self.basis]}


def fit_reference_energies(Z: np.ndarray, E: np.ndarray, max_atomic_number: int, mask: np.ndarray | None = None,
                           prior: dict | None = None) -> ReferenceFit:
    """Least-squares E0 with a documented fallback for degenerate compositions (module docstring).

    Args:
      Z: (M, n) atomic numbers, 0 = padding.
      E: (M,) energies in eV (float64).
      max_atomic_number: size of the returned table minus one.
      mask: (M,) bool, frames whose energy is known (None → all).
      prior: Z → energy in eV (e.g. isolated-atom energies of the data's method) used
        when the compositions are degenerate; None → GFN2-xTB free-atom energies.

    Returns:
      :class:`ReferenceFit`; a degenerate fit is logged as a warning.

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
    matrix = counts[:, present]
    rank = int(np.linalg.matrix_rank(matrix))
    e0 = np.zeros(max_atomic_number + 1)
    elements = tuple(int(z) for z in present)
    basis = _independent_rows(matrix, rank)
    if rank == len(present):
        e0[present] = np.linalg.lstsq(matrix, E, rcond=None)[0]
        return ReferenceFit(e0, elements, rank, "least-squares", basis=basis)

    prior_name = "gfn2-xtb-atoms" if prior is None else "user"
    table = GFN2_XTB_ATOM_ENERGIES if prior is None else prior
    degeneracy = (f"the training compositions determine only {rank} combination(s) of the {len(present)} element "
                  f"energies of Z = {list(elements)} ({len(np.unique(matrix, axis=0))} distinct composition(s))")
    missing = [z for z in elements if z not in table]
    if missing:
        e0[present] = np.linalg.lstsq(matrix, E, rcond=None)[0]
        fit = ReferenceFit(e0, elements, rank, "minimum-norm", basis=basis, message=(
            f"{degeneracy}; no {prior_name} prior for Z = {missing}, so the minimum-norm split was used "
            "(E0 proportional to the counts): predictions for other stoichiometries are meaningless"))
    else:
        p = np.array([float(table[z]) for z in elements])
        predicted = matrix @ p
        scale = float(predicted @ E / (predicted @ predicted))
        e0[present] = scale * p + np.linalg.lstsq(matrix, E - scale * predicted, rcond=None)[0]
        fit = ReferenceFit(e0, elements, rank, "prior-scaled", prior_name, scale, basis=basis, message=(
            f"{degeneracy}; E0 split in proportion to the {prior_name} prior scaled by {scale:.4g} "
            "(predictions for other stoichiometries rest on that choice; add frames of other compositions "
            "to determine E0)"))
    logger.warning("element reference energies: %s", fit.message)
    return fit


def _independent_rows(matrix: np.ndarray, rank: int) -> tuple:
    """``rank`` linearly independent distinct rows of the count matrix, as tuples of ints (first found first)."""
    basis = []
    for row in np.unique(matrix, axis=0):
        if np.linalg.matrix_rank(np.array(basis + [row])) > len(basis):
            basis.append(row)
        if len(basis) == rank:
            break
    return tuple(tuple(int(n) for n in row) for row in basis)


def fit_element_energies(Z: np.ndarray, E: np.ndarray, max_atomic_number: int,
                         mask: np.ndarray | None = None) -> np.ndarray:
    """E0 (max_atomic_number + 1,) float64 in eV of :func:`fit_reference_energies` (0 for absent elements).

    Raises:
      ValueError: no frame with a known energy, or an atomic number above max_atomic_number.
    """
    return fit_reference_energies(Z, E, max_atomic_number, mask).energies


def shifted_energies(Z: np.ndarray, E: np.ndarray, element_energies: np.ndarray) -> np.ndarray:
    """E_b − Σ_i E0[Z_i] in float64 (M,), eV."""
    e0 = np.asarray(element_energies, dtype=np.float64)
    return np.asarray(E, dtype=np.float64) - element_counts(Z, len(e0) - 1) @ e0
