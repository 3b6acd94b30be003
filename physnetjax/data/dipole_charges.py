"""Apparent atomic charges of dipole labels: how large fixed charges must be to give the dipoles.

For the frames k of one molecule (the same atoms in the same order), the fixed atomic
charges q (e) that best reproduce the dipole labels μ_k (e·Å, about the coordinate
origin, as the data sets store them) solve the least-squares problem

    μ_k ≈ Σ_i q_i R_ki,      subject to Σ_i q_i = Q (the total charge),

over the 3 components of every frame. These are apparent charges: they take up the
charge that moves with the atoms (charge flux), like Born effective charges, so they can
exceed the partial charges, but molecules stay below about 1 e: the reference GFN2-xTB
sets give at most 0.62 e (ethanol), 0.63 e (methanol) and 0.84 e (CO₂, whose asymmetric
stretch moves much charge), and GFN2-xTB normal-mode samples at 300 K
(``python -m physnetjax.data.generate --sampling normal-modes``, 60 frames each) at most
1.0 e (N of NH₃; H₂O 0.81, LiF 0.83, CH₃NO₂ 0.66, NaCl 0.65, H₂CO 0.41, CH₃CN 0.43,
HCl 0.17). Dipoles in Debye read as e·Å are 4.80× too large, and so are
the charges that reproduce them (2.98, 3.00 and 4.03 e on those sets).
:func:`physnetjax.data.sanity.check_label_sanity` reports a molecule whose largest charge
exceeds :data:`MAX_APPARENT_CHARGE` by :data:`CHARGE_SIGMAS` standard errors (so frames
of too little geometric variety, whose charges the fit cannot pin down, are not judged).

The dipole of an ion depends on the reference point: labels taken about each frame's
centroid or centre of mass c_k instead of the origin lack Q·c_k, and far from the origin
that too gives absurd charges. For an implausible ion the fit is repeated with μ_k + Q·c_k,
c_k the centroid; when that is plausible, the report names the reference point instead of a
unit. Any centre that is a fixed weighted mean of the positions (the centre of mass too)
fits equally well: Q·(c_k − c'_k) is linear in the positions and moves into the charges, so
the labels cannot tell which centre they were taken about.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import ase
import numpy as np

from physnetjax.data.remedies import label_remedies
from physnetjax.units import DEBYE
from physnetjax.validation import SYMBOLS

MAX_APPARENT_CHARGE = 2.0
"""e: the largest apparent charge of molecules (reference sets: ≤ 0.84 e; Debye dipoles read as e·Å: ≥ 2.98 e)."""

CHARGE_SIGMAS = 2.0
"""Standard errors by which a charge must exceed :data:`MAX_APPARENT_CHARGE` to be reported."""

MIN_FRAMES_PER_CHARGE = 3
"""Frames per fitted charge (n − 1 free charges for n atoms) below which a molecule is not fitted."""


class ApparentCharges(NamedTuple):
    """The fit for one molecule: its atomic numbers (n,), charges (n,) e, their standard errors (n,) e, frames, its
    total charge (e) and, for an implausible ion, whether its dipole labels give plausible charges about each frame's
    centre (module docstring)."""

    atomic_numbers: np.ndarray
    charges: np.ndarray
    errors: np.ndarray
    frames: int
    first_frame: int
    total_charge: float = 0.0
    about_centre: bool = False

    @property
    def largest(self) -> int:
        """Index of the atom with the largest |charge|."""
        return int(np.argmax(np.abs(self.charges)))

    @property
    def implausible(self) -> bool:
        """Whether the largest charge exceeds :data:`MAX_APPARENT_CHARGE` by :data:`CHARGE_SIGMAS` errors."""
        k = self.largest
        return abs(self.charges[k]) - CHARGE_SIGMAS * self.errors[k] > MAX_APPARENT_CHARGE

    def finding(self, where: str, sources) -> str:
        """The warning text for an implausible fit of frames of ``where`` (``sources``: the data set's frame names)."""
        k = self.largest
        formula = ase.Atoms(numbers=self.atomic_numbers).get_chemical_formula()
        if self.about_centre:
            return (f"{where}: the dipoles of {self.frames} frames of {formula} (total charge {self.total_charge:g} e, "
                    f"e.g. {sources[self.first_frame]}) need {self.charges[k]:+.3g} ± {self.errors[k]:.2g} e on atom "
                    f"{k} ({SYMBOLS[self.atomic_numbers[k]]}) about the coordinate origin, but plausible charges "
                    "about each frame's own centre: an ion's dipole depends on the reference point, and physnetjax "
                    "takes dipoles about the origin; add Q·c (c the centre they were taken about, e.g. the centroid "
                    "or centre of mass, Å) to these labels, or leave the dipoles out (not a unit slip: do not change "
                    "--dipole-unit)")
        return (f"{where}: the dipoles are implausibly large for their geometries: fixed atomic charges fitted to the "
                f"dipoles of {self.frames} frames of {formula} (e.g. {sources[self.first_frame]}) need "
                f"{self.charges[k]:+.3g} ± {self.errors[k]:.2g} e on atom {k} ({SYMBOLS[self.atomic_numbers[k]]}), "
                f"where molecules need at most ~1 e (reference sets: ≤ 0.84 e); dipoles in Debye read as e·Å are "
                f"{1 / DEBYE:.3g}× too large (read in Debye, that charge is {self.charges[k] * DEBYE:+.2g} e): if "
                f"the file's dipoles are in Debye, {label_remedies().dipole_unit}")


def fit_apparent_charges(positions: np.ndarray, dipoles: np.ndarray, total_charge: float) -> tuple:
    """Charges q (n,) e and their standard errors (n,) of μ_k ≈ Σ_i q_i R_ki with Σ_i q_i = ``total_charge``.

    Args:
      positions: (M, n, 3) Å, the frames of one molecule.
      dipoles: (M, 3) e·Å about the coordinate origin.
      total_charge: Q, e.

    The constraint is eliminated with q_n = Q − Σ_{i<n} q_i, leaving an ordinary least-squares
    problem in q_1..q_{n−1} whose covariance is σ² (AᵀA)⁻¹ with σ² the residual variance; the
    error of q_n follows from the same covariance. Returns None when AᵀA is singular.
    """
    r = np.asarray(positions, np.float64)
    mu = np.asarray(dipoles, np.float64)
    m, n, _ = r.shape
    design = (r[:, :-1, :] - r[:, -1:, :]).transpose(0, 2, 1).reshape(3 * m, n - 1)
    target = (mu - total_charge * r[:, -1, :]).reshape(3 * m)
    normal = design.T @ design
    try:
        covariance_unit = np.linalg.inv(normal)
    except np.linalg.LinAlgError:
        return None
    free = covariance_unit @ (design.T @ target)
    residual = target - design @ free
    variance = float(residual @ residual) / max(3 * m - (n - 1), 1)
    covariance = variance * covariance_unit
    charges = np.append(free, total_charge - free.sum())
    errors = np.sqrt(np.append(np.diag(covariance), covariance.sum()))
    return charges, errors


def apparent_charges(data) -> list[ApparentCharges]:
    """The apparent charges of every molecule of ``data`` (a :class:`~physnetjax.data.Dataset`) with dipole labels.

    Frames are grouped by their atoms in order; a group needs :data:`MIN_FRAMES_PER_CHARGE` frames per free
    charge and one total charge; periodic frames (a cell) are left out (their dipole has no single value).
    """
    labelled = np.nonzero(data.has_D & ~data.cell.any(axis=(1, 2)))[0]
    groups: dict[tuple, list[int]] = {}
    for k in labelled:
        groups.setdefault((tuple(data.Z[k, : data.N[k]].tolist()), float(data.Q[k])), []).append(int(k))
    fits = []
    for (numbers, total_charge), frames in groups.items():
        n = len(numbers)
        if n < 2 or len(frames) < MIN_FRAMES_PER_CHARGE * (n - 1):
            continue
        fit = fit_apparent_charges(data.R[frames, :n], data.D[frames], total_charge)
        if fit is None:
            continue
        charges = ApparentCharges(np.asarray(numbers), fit[0], fit[1], len(frames), frames[0], total_charge)
        if charges.implausible and total_charge != 0:
            positions = data.R[frames, :n]
            centred = fit_apparent_charges(positions, data.D[frames] + total_charge * positions.mean(axis=1),
                                           total_charge)
            plausible = centred is not None and not charges._replace(charges=centred[0], errors=centred[1]).implausible
            charges = charges._replace(about_centre=plausible)
        fits.append(charges)
    return fits


def implausible_charges(data) -> Optional[ApparentCharges]:
    """The molecule with the largest implausible apparent charge (:attr:`ApparentCharges.implausible`), or None."""
    suspects = [fit for fit in apparent_charges(data) if fit.implausible]
    return max(suspects, key=lambda fit: abs(fit.charges[fit.largest]), default=None)
