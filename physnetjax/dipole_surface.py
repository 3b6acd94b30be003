"""How well a model's dipole follows the geometry: R² of the dipole in the molecular frame.

IR intensities depend only on dipole *derivatives* ∂μ/∂Q along the normal modes. The dipole MAE
over MD frames hardly measures them: most of the spread of the dipole labels there is the rigid
rotation of the molecule, which any charge model (μ = Σ_i q_i r_i) reproduces by construction, while
the part that changes with the vibrations is small (formaldehyde at 500 K: 0.26 e·Å of spread, of
which 0.014 e·Å vibrational). This module removes the rotation and asks how much of the rest the
model explains.

For each frame k of a composition (the same atomic numbers in the same order), the rotation
U_k ∈ SO(3) that best superimposes its mass-weighted, centred positions onto those of the
composition's first frame (the reference) is found (Kabsch / orthogonal Procrustes)::

    x_ki = r_ki − Σ_j m_j r_kj / Σ_j m_j                       (centred positions, Å)
    U_k  = argmin_{U ∈ SO(3)} Σ_i m_i |U x_ki − x_ref,i|²      (masses m_i in amu)

and the label and predicted dipoles are rotated with it into the molecular frame,
a_k = U_k μ_k^label, p_k = U_k μ_k^pred (e·Å). Then, pooled over the compositions g with
per-composition means ā_g = mean_{k∈g} a_k::

    R² = 1 − Σ_k |p_k − a_k|² / Σ_g Σ_{k∈g} |a_k − ā_g|²

R² = 1 for a model whose dipoles equal the labels; a model whose dipole in the molecular frame does not
depend on the geometry (a constant c) has R² = −Σ_g n_g |c_g − ā_g|² / Σ|a_k − ā_g|² ≤ 0; the
rotation of a rigid dipole alone contributes nothing. The residual Σ|p_k − a_k|² is that of the
unrotated dipoles (U_k is orthogonal), so the metric changes the denominator, not the errors.

The dipoles must be about a point that moves with the molecule (the coordinate origin of a
neutral molecule, where it does not matter, or its centroid or centre of mass); the trainer uses
the centroid. For a linear or nearly linear molecule the rotation about its axis is fixed only by
the bend, which also sets the direction of the bending dipole, so the alignment follows it.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from physnetjax.errors import PhysNetInputWarning, warn_caller
from physnetjax.training_record import recorded_value

DIPOLE_SURFACE_KEY = "dipole_surface"
"""Checkpoint metadata key: {"valid": fit, "test": fit} (:meth:`DipoleSurfaceFit.to_dict`, None where a split has
no metric), written by the trainer for charge models."""

MIN_SPREAD = 1e-5
"""e·Å: below this root-mean-square spread of the label dipoles in the molecular frame there is no geometry
dependence to measure (rigid rotations only, or one geometry), and :func:`dipole_surface_fit` gives no metric.
It lies far above float32 rounding of the labels (~1e-7 e·Å) and far below vibrational dipole changes
(~1e-2 e·Å)."""

IR_R2_THRESHOLD = 0.8
"""Below this R² the trainer and the spectra commands warn that IR intensities are unreliable.

R² = 0.8 leaves a root-mean-square dipole error of √0.2 ≈ 45 % of the vibrational spread; since an
intensity goes with |∂μ/∂Q|², errors of that size in the derivatives already change intensities by
factors of ~0.3-2, enough to reorder bands of similar strength. A formaldehyde model whose dipole
changes along normal modes were 0.08× GFN2-xTB's (correlation 0.13), at a dipole MAE of 0.015 e·Å,
gave the C=O stretch 2.5 km/mol against 151."""


@dataclasses.dataclass(frozen=True)
class DipoleSurfaceFit:
    """The molecular-frame dipole metric of some frames (:func:`dipole_surface_fit`).

    Attributes:
      r2: R² in the molecular frame (dimensionless, ≤ 1; ≤ 0 when the model explains none of the spread).
      frames: frames compared (dipole-labelled, isolated, of a composition with at least two such frames).
      compositions: distinct compositions among them.
      spread_rms: sqrt(Σ_g Σ_k |a_k − ā_g|² / frames), e·Å: the labels' vibrational spread.
      error_rms: sqrt(Σ_k |p_k − a_k|² / frames), e·Å.
    """

    r2: float
    frames: int
    compositions: int
    spread_rms: float
    error_rms: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def molecular_frame_rotation(positions, reference, masses) -> np.ndarray:
    """U ∈ SO(3) minimising Σ_i m_i |U x_i − y_i|² for the mass-centred ``positions`` x and ``reference`` y.

    Kabsch: with H = Σ_i m_i y_i x_iᵀ = V S Wᵀ (SVD), U = V diag(1, 1, d) Wᵀ, d = sign det(V Wᵀ)
    (a proper rotation, never a reflection).

    Args:
      positions: (n, 3) Å. reference: (n, 3) Å, the same atoms in the same order. masses: (n,) amu.

    Returns:
      (3, 3) float64 rotation matrix (rotates a vector of the frame into the reference frame).
    """
    m = np.asarray(masses, np.float64)
    x = _centred(np.asarray(positions, np.float64), m)
    y = _centred(np.asarray(reference, np.float64), m)
    v, _, wt = np.linalg.svd((m[:, None] * y).T @ x)
    d = np.sign(np.linalg.det(v @ wt))
    return v @ np.diag([1.0, 1.0, d]) @ wt


def _centred(positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
    return positions - masses @ positions / masses.sum()


def dipole_surface_fit(atomic_numbers, positions, num_atoms, label_dipoles, predicted_dipoles, *, cell=None,
                       masses=None) -> Optional[DipoleSurfaceFit]:
    """R² of the predicted dipoles against the labels in each composition's molecular frame (module docstring).

    Frames are grouped by composition (the sequence of atomic numbers); the first frame of each group is its
    reference. Periodic frames (a non-zero ``cell``) and compositions with a single frame are left out.

    Args:
      atomic_numbers: (M, n) int, 0 on padding. positions: (M, n, 3) Å. num_atoms: (M,) real atoms per frame.
      label_dipoles, predicted_dipoles: (M, 3) e·Å, about a point that moves with the molecule.
      cell: (M, 3, 3) Å or None (all isolated).
      masses: (max Z + 1,) amu per atomic number, or None for ASE's standard atomic masses.

    Returns:
      :class:`DipoleSurfaceFit`, or None when no frames remain or the labels' spread in the molecular
      frame is below :data:`MIN_SPREAD` (no geometry dependence to measure).
    """
    import ase.data

    z = np.asarray(atomic_numbers)
    r = np.asarray(positions, np.float64)
    n = np.asarray(num_atoms)
    labels = np.asarray(label_dipoles, np.float64)
    predicted = np.asarray(predicted_dipoles, np.float64)
    mass_of = ase.data.atomic_masses if masses is None else np.asarray(masses, np.float64)
    periodic = np.zeros(len(z), bool) if cell is None else np.any(np.asarray(cell) != 0, axis=(1, 2))
    groups: dict = {}
    for k in np.flatnonzero(~periodic):
        groups.setdefault(tuple(z[k, :n[k]].tolist()), []).append(k)
    spread = error = 0.0
    frames = compositions = 0
    for composition, members in groups.items():
        if len(members) < 2:
            continue
        m = mass_of[list(composition)]
        count = len(composition)
        reference = r[members[0], :count]
        rotations = np.stack([molecular_frame_rotation(r[k, :count], reference, m) for k in members])
        aligned = np.einsum("kab,kb->ka", rotations, labels[members])
        spread += float(np.sum((aligned - aligned.mean(axis=0)) ** 2))
        error += float(np.sum((predicted[members] - labels[members]) ** 2))
        frames += len(members)
        compositions += 1
    if frames == 0 or spread <= frames * MIN_SPREAD ** 2:
        return None
    return DipoleSurfaceFit(r2=1.0 - error / spread, frames=frames, compositions=compositions,
                            spread_rms=float(np.sqrt(spread / frames)), error_rms=float(np.sqrt(error / frames)))


def judged_r2(record) -> Optional[tuple[str, float]]:
    """(split, R²) by which a record {"valid": fit, "test": fit} (fits as :meth:`DipoleSurfaceFit.to_dict`, or None)
    is judged: the test split's (frames never used to pick the model), else the validation split's; None without
    either."""
    if not isinstance(record, dict):
        return None
    for split in ("test", "valid"):
        fit = record.get(split)
        if isinstance(fit, dict) and fit.get("r2") is not None:
            return split, float(fit["r2"])
    return None


def recorded_r2(metadata: Optional[dict]) -> Optional[tuple[str, float]]:
    """:func:`judged_r2` of a checkpoint's :data:`DIPOLE_SURFACE_KEY` record (read by
    :func:`~physnetjax.training_record.recorded_value`: also from the ``source_metadata`` of a re-saved
    checkpoint); None without one."""
    return judged_r2(recorded_value(metadata, DIPOLE_SURFACE_KEY))


SUGGESTED_DIPOLE_WEIGHT = 20.0
"""The ``--dipole-weight`` a low R² suggests to a run that used less."""


def ir_remedy(dipole_weight: Optional[float] = None) -> str:
    """What to do about a low R² (the trainer's options and the data generator's); ``dipole_weight``: the run's,
    where known (at or above :data:`SUGGESTED_DIPOLE_WEIGHT` the advice is to go beyond it, not to it)."""
    if dipole_weight is None or dipole_weight < SUGGESTED_DIPOLE_WEIGHT:
        weight = f"raise --dipole-weight (e.g. {SUGGESTED_DIPOLE_WEIGHT:g})"
    else:
        weight = f"raise --dipole-weight beyond this run's {dipole_weight:g}"
    return (f"{weight}, add geometry-varied frames such as normal-mode samples (python -m physnetjax.data.generate "
            "--sampling normal-modes), or train longer")


def unreliable_ir_message(split: str, r2: float, dipole_weight: Optional[float] = None) -> Optional[str]:
    """The warning for a model whose molecular-frame dipole R² on ``split`` is below :data:`IR_R2_THRESHOLD`
    (None at or above it); ``dipole_weight``: the training run's, where known (:func:`ir_remedy`)."""
    if r2 >= IR_R2_THRESHOLD:
        return None
    return (f"the model's dipole follows the geometry poorly: dipole R² in the molecular frame {r2:.2f} on the "
            f"{split} split (below {IR_R2_THRESHOLD:g}; rigid rotation removed), so its IR intensities (which "
            f"depend only on dipole derivatives) are unreliable, though its frequencies may be fine; "
            f"{ir_remedy(dipole_weight)}")


def warn_unreliable_ir(metadata: Optional[dict]) -> None:
    """Warn (:class:`~physnetjax.errors.PhysNetInputWarning`) when a checkpoint's recorded molecular-frame dipole
    R² is below :data:`IR_R2_THRESHOLD`; silent for a checkpoint without the record."""
    recorded = recorded_r2(metadata)
    message = None if recorded is None else unreliable_ir_message(*recorded)
    if message is not None:
        warn_caller(message, PhysNetInputWarning)
