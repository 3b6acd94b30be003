"""Harmonic vibrational analysis: exact autodiff Hessian, normal modes, IR intensities.

Pipeline (all float64; units Å, eV, amu, e):

1. Hessian H_{ia,jb} = ∂²E/∂R_ia∂R_jb (eV/Å²) by forward-over-reverse autodiff of the
   energy, symmetrised (H + Hᵀ)/2; for charge models the dipole derivatives
   ∂μ_b/∂R_ia (e) by forward autodiff of μ = Σ_i q_i r_i.
2. Mass weighting H̃ = M^{-1/2} H M^{-1/2} (eV/(Å²·amu)), M = diag(m_i, 3× each).
3. Projection of the rigid-body motions (:mod:`physnetjax.spectra.rigid_body`): with
   B (3N × (3N − 6), or 3N − 5 for a linear molecule) an orthonormal basis of the
   complement of the translations and rotations, the vibrational eigenproblem is
   Bᵀ H̃ B c_k = λ_k c_k and the mass-weighted modes are e_k = B c_k. This gives exactly
   3N − 6 (3N − 5) modes whether or not the geometry is a minimum.
   *Zero modes*: a geometry of F separate fragments (no atom of one within the model
   cutoff of another, or for a bare Hessian no coupling between them, see
   :mod:`physnetjax.spectra.rigid_body`) has Σ_f n_f − 6 (− 5) more zero-frequency
   motions, the fragments' relative translations and rotations (n_f = 3, 5 or 6 per
   fragment). They are the modes with the largest weight Σ_j (u_jᵀ e_k)² on an
   orthonormal basis u_j of the fragments' rigid-body motions orthogonal to the whole's.
   These and any mode with |ν̃_k| < :data:`ZERO_MODE_CM1` are flagged in ``zero_modes``
   (not vibrations; a :class:`ZeroModeWarning` names their number and cause); the
   eigenproblem and the other modes are unchanged.
4. Wavenumbers ν̃_k = sign(λ_k) · 521.47 · √|λ_k| cm⁻¹
   (:data:`physnetjax.units.SQRT_EV_PER_A2_AMU_IN_CM1`); λ_k < 0 is an imaginary
   frequency, reported as a negative wavenumber and flagged in ``imaginary``.
5. Cartesian displacements d_k = M^{-1/2} e_k (Å per unit mass-weighted normal
   coordinate Q_k, Å·√amu); the normal mode returned is d_k / |d_k| (unit Euclidean norm
   over all 3N components, sign arbitrary); its reduced mass μ_k = 1 / |d_k|² (amu,
   Gaussian's convention) is the mass for which ω_k² = k_k / μ_k with k_k the curvature of
   E along the unit displacement. For a diatomic it is m₁m₂M/(m₁² + m₂²), not the
   two-body m₁m₂/M, because the unit displacement moves both atoms.
6. Zero-point energy ZPE = ½ Σ_{λ_k > 0} h c ν̃_k (eV; imaginary and zero modes excluded).
7. IR intensity (double-harmonic approximation) A_k = N_A / (12 ε_0 c²) |∂μ/∂Q_k|² with
   ∂μ/∂Q_k = Σ_ia ∂μ/∂R_ia d_{k,ia} (e/√amu), in km/mol
   (:data:`physnetjax.units.E2_PER_AMU_IN_KM_PER_MOL`). Because Σ_i √m_i e_{k,i} = 0 for a
   vibration (the centre of mass stays put), the result is the same whether μ is taken
   about a fixed point or about the centre of mass, charged molecules included.

At a minimum the rigid-body block of H̃ vanishes (translations exactly, by translation
invariance of the model; rotations because the gradient is zero); its eigenvalues,
as signed wavenumbers in ``rigid_body_cm1``, measure how far from a minimum the
geometry is.

:func:`harmonic_analysis` runs the pipeline on any energy (and dipole) function of the
positions, :func:`harmonic` on a PhysNet model (optimising the geometry first by
default) and :func:`modes_from_hessian` is steps 2–7 on a given Hessian.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Mapping, Optional

import ase.data
import jax
import jax.numpy as jnp
import numpy as np

from physnetjax import compilation
from physnetjax.calculator import cast_params
from physnetjax.errors import PhysNetInputError, displayed, displayed_setting, warn_caller
from physnetjax.training_record import NO_TRAINING_RECORD, TrainingRecord, training_record_of
from physnetjax.validation import check_length_unit, check_masses, check_range, validate_structure
from physnetjax.spectra.molecule import molecule_functions, require_molecule
from physnetjax.spectra.optimize import (DEFAULT_FMAX, DEFAULT_MAX_STEP, DEFAULT_MAX_STEPS, OptimizationResult,
                                         check_optimized_geometry, check_optimizer_settings, minimize)
from physnetjax.spectra.rigid_body import (
    LINEAR_TOLERANCE,
    check_linear_tolerance,
    coupled_fragments,
    fragment_rigid_body_basis,
    fragments_within,
    is_linear,
    rigid_body_basis,
)
from physnetjax.units import CM1_IN_EV, E2_PER_AMU_IN_KM_PER_MOL, SQRT_EV_PER_A2_AMU_IN_CM1

logger = logging.getLogger(__name__)

ZERO_MODE_CM1 = 1.0
"""Modes with |ν̃| below this (cm⁻¹) are zero modes, free motions rather than vibrations:
a classical oscillator of 1 cm⁻¹ at 300 K has an amplitude √(k_B T/μ)/ω ≈ 84 Å/√(μ/amu)."""


ANALYSIS_MAX_FORCE = 1e-3
"""eV/Å: largest max |F| at which an optimised geometry is analysed without a :class:`NonMinimumWarning`. Shipped
ethanol_ir model, start shaken by 0.03 Å: the largest frequency error against fmax = 1e-6 is 7.5 cm^-1 at max |F| =
0.0093 eV/Å, 0.26 cm^-1 at 0.0014 and 0.09 at 0.0008 (the torsions, soft modes, move most)."""


class NonMinimumWarning(UserWarning):
    """Harmonic analysis at a geometry whose forces exceed the convergence threshold."""


class ZeroModeWarning(UserWarning):
    """Modes that are not vibrations: relative motions of separate fragments, or |ν̃| < 1 cm⁻¹."""


@dataclasses.dataclass(frozen=True)
class HarmonicResult:
    """Normal modes of one molecule (M = 3N − 6, or 3N − 5 when ``linear``), sorted by λ ascending.

    Fields:
      frequencies_cm1: (M,) wavenumbers in cm⁻¹; imaginary ones as negative numbers.
      imaginary: (M,) bool, True where the eigenvalue is negative.
      zero_modes: (M,) bool, True for a mode that is not a vibration: a relative
        translation or rotation of separate fragments, or |ν̃| < :data:`ZERO_MODE_CM1`.
      normal_modes: (M, N, 3) Cartesian displacements, unit norm over all 3N components.
      reduced_masses: (M,) amu, μ_k = 1 / |M^{-1/2} e_k|².
      intensities_km_mol: (M,) IR intensities in km/mol, or None (no dipole).
      zero_point_energy: ½ Σ h c ν̃_k over the real modes, eV.
      positions: (N, 3) Å, the geometry analysed.  masses: (N,) amu.
      energy: eV at ``positions``.  max_force: max_i |F_i| there, eV/Å.
      linear: whether 5 (True) or 6 rigid-body motions were projected out.
      fragments: the atom indices of each separate fragment (one array: a connected molecule).
      rigid_body_cm1: (5 or 6,) signed wavenumbers of the rigid-body block of the
        mass-weighted Hessian (≈ 0 at a minimum).
      hessian: (3N, 3N) eV/Å², row/column 3i + a.
      dipole_derivatives: (N, 3, 3) ∂μ_b/∂R_ia in e, indexed [i, a, b], or None.
      atomic_numbers: (N,) or None (set by :func:`harmonic`).
      optimization: the :class:`OptimizationResult` that produced ``positions``, or None.
      total_charge: the total charge Q in e the model was evaluated at, or None (set by :func:`harmonic`).
    """

    frequencies_cm1: np.ndarray
    imaginary: np.ndarray
    zero_modes: np.ndarray
    normal_modes: np.ndarray
    reduced_masses: np.ndarray
    intensities_km_mol: Optional[np.ndarray]
    zero_point_energy: float
    positions: np.ndarray
    masses: np.ndarray
    energy: float
    max_force: float
    linear: bool
    fragments: tuple
    rigid_body_cm1: np.ndarray
    hessian: np.ndarray
    dipole_derivatives: Optional[np.ndarray]
    atomic_numbers: Optional[np.ndarray] = None
    optimization: Optional[OptimizationResult] = None
    total_charge: Optional[float] = None


def signed_wavenumbers(eigenvalues) -> np.ndarray:
    """ν̃ = sign(λ) · 521.47 · √|λ| in cm⁻¹ for eigenvalues λ of the mass-weighted Hessian (eV/(Å²·amu))."""
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    return np.sign(eigenvalues) * SQRT_EV_PER_A2_AMU_IN_CM1 * np.sqrt(np.abs(eigenvalues))


def modes_from_hessian(hessian, positions, masses, dipole_derivatives=None, *, energy: float = float("nan"),
                       max_force: float = float("nan"), linear_tolerance: float = LINEAR_TOLERANCE,
                       fragment_cutoff: Optional[float] = None) -> HarmonicResult:
    """Steps 2–7 of the module docstring on a given Hessian (NumPy, float64).

    Args:
      hessian: (3N, 3N) eV/Å²; its symmetric part (H + Hᵀ)/2 is used (a finite-difference Hessian is not exactly
        symmetric, and ``eigh`` would otherwise read one triangle of it only).  positions: (N, 3) Å.  masses: (N,) amu.
      dipole_derivatives: (N, 3, 3) ∂μ_b/∂R_ia in e, or None.
      energy, max_force: recorded in the result (eV, eV/Å).
      linear_tolerance: see :data:`physnetjax.spectra.rigid_body.LINEAR_TOLERANCE` (at least
        :data:`~physnetjax.spectra.rigid_body.MIN_LINEAR_TOLERANCE`).
      fragment_cutoff: Å; fragments are the atoms linked by distances below it (the
        model cutoff), or with None those coupled by the Hessian
        (:func:`physnetjax.spectra.rigid_body.coupled_fragments`).

    Warns:
      ZeroModeWarning: some modes are zero modes (``zero_modes``), with their number and cause.

    Raises:
      ValueError: fewer than 2 atoms, shapes that do not match, non-finite positions, Hessian or dipole
        derivatives, or a ``linear_tolerance`` that is not finite or below
        :data:`~physnetjax.spectra.rigid_body.MIN_LINEAR_TOLERANCE`.
    """
    positions = np.asarray(positions, dtype=np.float64)
    num_atoms = positions.shape[0] if positions.ndim else 0
    if positions.shape != (num_atoms, 3) or num_atoms < 2:
        raise ValueError(f"harmonic analysis needs positions of shape (N, 3) with N >= 2, received {positions.shape}")
    if not np.isfinite(positions).all():
        raise ValueError("positions contain NaN or Inf")
    linear_tolerance = check_linear_tolerance(linear_tolerance)
    masses = check_masses(masses, num_atoms)
    hessian = np.asarray(hessian, dtype=np.float64)
    if hessian.shape != (3 * num_atoms, 3 * num_atoms):
        raise ValueError(f"hessian must have shape ({3 * num_atoms}, {3 * num_atoms}), received {hessian.shape}")
    if not np.isfinite(hessian).all():
        raise ValueError("the Hessian contains NaN or Inf: the energy is not twice differentiable here")
    hessian = 0.5 * (hessian + hessian.T)
    if dipole_derivatives is not None:
        dipole_derivatives = np.asarray(dipole_derivatives, dtype=np.float64)
        if dipole_derivatives.shape != (num_atoms, 3, 3):
            raise ValueError(f"dipole_derivatives must have shape ({num_atoms}, 3, 3), received "
                             f"{dipole_derivatives.shape}")
        if not np.isfinite(dipole_derivatives).all():
            raise ValueError("the dipole derivatives contain NaN or Inf: the dipole is not differentiable here, so "
                             "no IR intensities can be computed")

    inv_sqrt_m = np.repeat(masses**-0.5, 3)
    weighted = inv_sqrt_m[:, None] * hessian * inv_sqrt_m[None, :]
    linear = is_linear(positions, masses, linear_tolerance)
    rigid = rigid_body_basis(positions, masses, linear)
    complete, _ = np.linalg.qr(rigid, mode="complete")
    vibrational = complete[:, rigid.shape[1]:]
    eigenvalues, coefficients = np.linalg.eigh(vibrational.T @ weighted @ vibrational)
    displacements = inv_sqrt_m[:, None] * (vibrational @ coefficients)
    norms = np.linalg.norm(displacements, axis=0)
    frequencies = signed_wavenumbers(eigenvalues)
    if fragment_cutoff is None:
        fragments = coupled_fragments(hessian)
    else:
        fragments = fragments_within(positions, fragment_cutoff)
    zero_modes = np.abs(frequencies) < ZERO_MODE_CM1
    relative = 0
    if len(fragments) > 1:
        per_fragment = fragment_rigid_body_basis(positions, masses, fragments, linear_tolerance)
        relative = per_fragment.shape[1] - rigid.shape[1]
        motions = np.linalg.svd(per_fragment - rigid @ (rigid.T @ per_fragment), full_matrices=False)[0]
        weights = np.sum((motions[:, :relative].T @ vibrational @ coefficients) ** 2, axis=0)
        zero_modes[np.argsort(weights, kind="stable")[len(weights) - relative:]] = True
    if zero_modes.any():
        warn_caller(_zero_mode_message(int(zero_modes.sum()), relative, fragments, positions, fragment_cutoff,
                                         rigid.shape[1]), ZeroModeWarning)

    intensities = None
    if dipole_derivatives is not None:
        dipole_per_mode = dipole_derivatives.reshape(3 * num_atoms, 3).T @ displacements
        intensities = E2_PER_AMU_IN_KM_PER_MOL * np.sum(dipole_per_mode**2, axis=0)

    return HarmonicResult(
        frequencies_cm1=frequencies,
        imaginary=eigenvalues < 0,
        zero_modes=zero_modes,
        normal_modes=(displacements / norms).T.reshape(-1, num_atoms, 3),
        reduced_masses=1.0 / norms**2,
        intensities_km_mol=intensities,
        zero_point_energy=0.5 * CM1_IN_EV * float(np.sum(frequencies[(eigenvalues > 0) & ~zero_modes])),
        positions=positions,
        masses=masses,
        energy=float(energy),
        max_force=float(max_force),
        linear=linear,
        fragments=tuple(fragments),
        rigid_body_cm1=signed_wavenumbers(np.linalg.eigvalsh(rigid.T @ weighted @ rigid)),
        hessian=hessian,
        dipole_derivatives=dipole_derivatives,
    )


def harmonic_analysis(energy_fn, positions, masses, *, dipole_fn=None, args=(),
                      linear_tolerance: float = LINEAR_TOLERANCE,
                      fragment_cutoff: Optional[float] = None) -> HarmonicResult:
    """Harmonic analysis of ``energy_fn`` at ``positions`` (autodiff derivatives, float64).

    Args:
      energy_fn: pure, JAX-differentiable ``(positions (N, 3) Å, *args) -> () eV``.
      positions: (N, 3) Å, N ≥ 2 (used as given: no optimisation here).
      masses: (N,) amu.
      dipole_fn: optional ``(positions, *args) -> (3,) e·Å``; gives IR intensities.
      args: further arguments of both functions (e.g. parameters).
      linear_tolerance: Å; the molecule counts as linear when every atom lies within it of the
        molecule's axis (:data:`physnetjax.spectra.rigid_body.LINEAR_TOLERANCE`).
      fragment_cutoff: Å, or None: how fragments are found (:func:`modes_from_hessian`).

    Returns:
      :class:`HarmonicResult` (``atomic_numbers`` and ``optimization`` None).

    Warns:
      ZeroModeWarning: as :func:`modes_from_hessian`.

    Raises:
      ValueError: positions not finite (N, 3) with N ≥ 2, bad masses, non-finite Hessian or dipole derivatives,
        a ``linear_tolerance`` that is not finite or below :data:`~physnetjax.spectra.rigid_body.MIN_LINEAR_TOLERANCE`.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3 or not np.isfinite(positions).all():
        raise ValueError(f"positions must be finite with shape (N, 3), received shape {positions.shape}")
    check_linear_tolerance(linear_tolerance)
    with jax.enable_x64(True):
        derivatives = _derivatives(energy_fn, dipole_fn, displacements_at_once(len(positions)))
        energy, gradient, hessian, dipole_jacobian = jax.device_get(derivatives(jnp.asarray(positions), tuple(args)))
    size = 3 * positions.shape[0]
    hessian = np.asarray(hessian, dtype=np.float64).reshape(size, size)
    dipole_derivatives = None
    if dipole_jacobian is not None:
        dipole_derivatives = np.asarray(dipole_jacobian, dtype=np.float64).reshape(-1, 3, 3)
    return modes_from_hessian(
        0.5 * (hessian + hessian.T), positions, masses, dipole_derivatives, energy=float(energy),
        max_force=float(np.max(np.linalg.norm(gradient, axis=-1))), linear_tolerance=linear_tolerance,
        fragment_cutoff=fragment_cutoff,
    )


def harmonic(
    model,
    params,
    atomic_numbers,
    positions,
    masses=None,
    total_charge: float = 0.0,
    *,
    optimize: bool = True,
    fmax: float = DEFAULT_FMAX,
    max_steps: int = DEFAULT_MAX_STEPS,
    max_step: float = DEFAULT_MAX_STEP,
    intensities: Optional[bool] = None,
    linear_tolerance: float = LINEAR_TOLERANCE,
    training_record: TrainingRecord = NO_TRAINING_RECORD,
    names: Optional[Mapping[str, str]] = None,
) -> HarmonicResult:
    """Harmonic frequencies, normal modes, ZPE and IR intensities of one molecule from a model.

    Runs in float64 whatever the global JAX setting (params are cast). With
    ``optimize=True`` (default) the geometry is first relaxed to max |F| ≤ ``fmax`` by
    :func:`physnetjax.spectra.minimize` and the analysis is done there (the geometry is
    in ``result.positions``, the optimisation in ``result.optimization``). With
    ``optimize=False`` the given geometry is analysed as it is; if its max |F| exceeds
    ``fmax`` a :class:`NonMinimumWarning` names it, since the frequencies of a
    non-stationary point depend on the projection and are not those of the molecule.
    Atoms that are not linked to the others by distances below the model cutoff form
    separate fragments: their relative motions are flagged in ``zero_modes`` and a
    :class:`ZeroModeWarning` names them (module docstring).

    Args:
      model, params: a :class:`physnetjax.PhysNet` and its variables ``{"params": ...}``.
      atomic_numbers: (N,) ints, N ≥ 2.  positions: (N, 3) Å.
      masses: (N,) amu for isotopes; None → ASE's standard atomic masses.
      total_charge: Q in e.
      optimize: relax the geometry first.  fmax: eV/Å.  max_steps: L-BFGS steps.
      max_step: largest displacement of any atom in one optimisation step, Å.
      intensities: None → IR intensities when the model predicts charges, else None;
        True → required (ValueError for a model without charges); False → not computed.
      linear_tolerance: see :data:`physnetjax.spectra.rigid_body.LINEAR_TOLERANCE`.
      training_record: what the model's training data held (checkpoint metadata,
        :class:`~physnetjax.training_record.TrainingRecord`); a structure outside it warns, and so does an
        optimised geometry whose interatomic distances lie outside those of the training data.
      names: keyword → how the messages name it; a command line passes its options, e.g. ``{"fmax": "--fmax",
        "max_steps": "--max-steps", "max_step": "--max-step", "optimize": "--no-optimize"}`` (the option that turns ``optimize`` off).

    Raises:
      ValueError: invalid structure (NaN/Inf positions, atomic numbers, total charge; see
        :func:`physnetjax.validation.validate_structure`), fewer than 2 atoms, masses, ``optimize`` or
        ``intensities`` not a bool (None too for ``intensities``; a string "no" optimised), fmax (also with
        ``optimize=False``: it judges the geometry analysed as given), max_steps or max_step,
        ``linear_tolerance`` (:func:`~physnetjax.spectra.rigid_body.check_linear_tolerance`), or intensities=True on
        a model without charges.
      OptimizationError: the optimisation did not converge (``.positions`` kept).

    Warns:
      NonMinimumWarning: the geometry analysed is not a minimum: max |F| above ``fmax`` (``optimize=False``) or
        above :data:`ANALYSIS_MAX_FORCE`, or a stationary point with imaginary modes, a saddle point
        (:func:`warn_if_saddle_point`; an optimisation from a symmetric start can end on one).
      PhysNetInputWarning: close contacts, a molecule stretched as by positions in bohr
        (:func:`physnetjax.validation.check_length_unit`), an optimised geometry stretched so
        (a spurious minimum of the model), or elements, a total charge, a composition or interatomic
        distances outside the training data (:meth:`physnetjax.training_record.TrainingRecord.check_structure`;
        the distances of the optimised geometry too,
        :meth:`~physnetjax.training_record.TrainingRecord.check_distances`).
    """
    for keyword, value in (("optimize", optimize), ("intensities", intensities)):
        if not (isinstance(value, (bool, np.bool_)) or (keyword == "intensities" and value is None)):
            allowed = "True or False" + (" or None" if keyword == "intensities" else "")
            raise PhysNetInputError(f"{keyword} must be {allowed}, received {value!r} ({type(value).__name__})")
    if optimize:
        check_optimizer_settings(fmax, max_steps, names, max_step)
    else:  # fmax judges the geometry analysed as given (NonMinimumWarning): NaN silenced that, −1 always warned
        check_range(displayed("fmax", names), fmax, "eV/Å", 0.0, strict=True)
    check_linear_tolerance(linear_tolerance)
    z, r = validate_structure(atomic_numbers, positions, model.supported_max_atomic_number, total_charge=total_charge)
    require_molecule(z)
    stretched_start = check_length_unit(z, r)
    record = training_record_of(training_record)
    record.check_structure(model, z, total_charge, positions=r)
    if intensities and not model.charges:
        raise ValueError(
            "IR intensities need the dipole, which only a model with charges=True predicts; this model "
            "has charges=False (use intensities=None or False for frequencies only)"
        )
    masses = ase.data.atomic_masses[z] if masses is None else check_masses(masses, z.shape[0], names)
    functions = molecule_functions(model, z, total_charge)
    dipole_fn = functions.dipole if intensities is not False else None
    with jax.enable_x64(True):
        params64 = cast_params(params, np.float64)
        optimization = None
        if optimize:

            def relax(start):
                return minimize(functions.energy, start, (params64,), fmax=fmax, max_steps=max_steps,
                                max_step=max_step, names=names)

            optimization = relax(r)
            check_optimized_geometry(z, r, optimization, stretched_start, relax)
            r = optimization.positions
            record.check_distances(z, r, where="optimised geometry")
            logger.info("optimised in %d steps to max |F| = %.2e eV/Å", optimization.steps, optimization.fmax)
        result = harmonic_analysis(functions.energy, r, masses, dipole_fn=dipole_fn, args=(params64,),
                                   linear_tolerance=linear_tolerance, fragment_cutoff=model.cutoff)
    if not optimize and result.max_force > fmax:
        warn_caller(
            f"the geometry is not a minimum: max |F| = {result.max_force:.3e} eV/Å > "
            f"{displayed_setting('fmax', f'{fmax:.1e}', names)} eV/Å; frequencies at a non-stationary point are not "
            f"those of the molecule ({_optimize_hint(names)})",
            NonMinimumWarning,
        )
    elif result.max_force > ANALYSIS_MAX_FORCE:
        warn_caller(
            f"the geometry is not a minimum: it is analysed at max |F| = {result.max_force:.3e} eV/Å ("
            + ("optimised to " if optimize else "accepted at ")
            + f"{displayed_setting('fmax', f'{fmax:.1e}', names)} eV/Å), where soft modes are off by several cm^-1 "
            f"(the rigid-body block, 0 at a minimum, reaches {np.abs(result.rigid_body_cm1).max():.3g} cm^-1); "
            f"give {displayed('fmax', names)} <= {ANALYSIS_MAX_FORCE:g} (default {DEFAULT_FMAX:g}) for a vibrational "
            "analysis", NonMinimumWarning)
    else:
        warn_if_saddle_point(result, optimize, names)
    return dataclasses.replace(result, atomic_numbers=z, optimization=optimization, total_charge=float(total_charge))


def warn_if_saddle_point(result: HarmonicResult, optimized: bool, names: Optional[Mapping[str, str]] = None) -> None:
    """NonMinimumWarning when a stationary geometry has imaginary modes (not zero modes): a saddle point, not a minimum.

    L-BFGS follows the forces, so from a start with a symmetry that the minimum lacks (collinear, planar, eclipsed)
    it converges to the stationary point of that symmetry: max |F| <= fmax there, yet the frequencies are not those
    of the molecule and the zero-point energy leaves the imaginary modes out.
    """
    saddle = np.asarray(result.imaginary) & ~np.asarray(result.zero_modes)
    if not saddle.any():
        return
    listed = ", ".join(f"{abs(value):.1f}i" for value in np.asarray(result.frequencies_cm1)[saddle])
    where = ("the optimised geometry is a saddle point (the optimisation follows the forces, and from a start with a "
             "symmetry the minimum lacks they lead to the stationary point of that symmetry)" if optimized
             else "the geometry is a saddle point")
    again = "again" if optimized else f"({_optimize_hint(names)})"
    warn_caller(
        f"{where}, not a minimum: {int(saddle.sum())} imaginary mode(s) ({listed} cm^-1; negative in "
        "frequencies_cm1 and left out of the zero-point energy), so the frequencies, intensities and ZPE are not "
        f"those of the molecule's minimum; displace the geometry along the imaginary mode(s) (normal_modes) and "
        f"optimise {again}", NonMinimumWarning)


def _optimize_hint(names: Optional[Mapping[str, str]]) -> str:
    """How to ask for the optimisation: ``optimize=True``, or leaving out the option that turned it off."""
    option = displayed("optimize", names)
    return "use optimize=True" if option == "optimize" else f"leave out {option} to optimise first"


def _zero_mode_message(count: int, relative: int, fragments, positions, fragment_cutoff, rigid: int) -> str:
    """One line: how many modes are zero modes and why (``relative`` of them fragment motions)."""
    causes = []
    if relative:
        groups = " | ".join(_index_ranges(atoms) for atoms in fragments)
        closest = min(float(np.min(np.linalg.norm(positions[a][:, None] - positions[b][None], axis=-1)))
                      for i, a in enumerate(fragments) for b in fragments[i + 1:])
        apart = (f"no atom within the model cutoff of {fragment_cutoff:g} Å of another fragment"
                 if fragment_cutoff is not None else "no coupling between them in the Hessian")
        causes.append(f"the geometry is {len(fragments)} separate fragments (atoms {groups}; {apart}, closest "
                      f"atoms {closest:.2f} Å apart), so {relative} mode(s) are their relative translations and "
                      "rotations")
    if count > relative:
        causes.append(f"{count - relative} mode(s) have |wavenumber| < {ZERO_MODE_CM1:g} cm^-1, a direction "
                      "in which the energy is flat")
    advice = ("analyse each fragment on its own (a charge model shares the total charge among all atoms, so its "
              "fragments exchange charge and their intensities are not those of the fragments alone)"
              if relative else "check that the molecule has not dissociated")
    return (f"{count} zero-frequency mode(s) besides the {rigid} rigid-body motions, not vibrations (flagged in "
            f"zero_modes, left out of the ZPE): {'; '.join(causes)}; {advice}")


def _index_ranges(indices) -> str:
    """Atom indices as compact ranges: [0, 1, 2, 5] -> '0-2,5'."""
    runs = []
    for index in np.asarray(indices).tolist():
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


HESSIAN_PAIR_DIRECTIONS = 2 ** 18
"""Bound on (unit displacements evaluated at once) × N² in :func:`_derivatives`: a linearised
evaluation of the model holds O(N²) numbers per displacement (all pairs), so the 3N
displacements are taken ⌊2¹⁸ / N²⌋ at a time (all at once up to N = 44; 18 at a time for
N = 120, about 1.5 GB for a small model, where all 360 at once needed 29 GB)."""


def displacements_at_once(num_atoms: int) -> int:
    """How many of the 3N unit displacements :func:`_derivatives` evaluates together (≥ 1)."""
    return max(1, min(3 * num_atoms, HESSIAN_PAIR_DIRECTIONS // num_atoms ** 2))


def _in_chunks(linear_fn, directions, chunk: int):
    """``jax.vmap(linear_fn)(directions)``, evaluated ``chunk`` directions at a time (``lax.map`` over chunks,
    the last one padded with zero directions whose results are dropped) so that memory is bounded by ``chunk``."""
    count = directions.shape[0]
    padded = -(-count // chunk) * chunk
    filled = jnp.concatenate([directions, jnp.zeros((padded - count, *directions.shape[1:]), directions.dtype)])
    results = jax.lax.map(jax.vmap(linear_fn), filled.reshape(padded // chunk, chunk, *directions.shape[1:]))
    return results.reshape(padded, *results.shape[2:])[:count]


@functools.lru_cache(maxsize=64)
def _derivatives(energy_fn, dipole_fn, chunk: int):
    """Jitted ``(positions, args) -> (E, ∂E/∂R (N, 3), H (3N, N, 3), ∂μ/∂R (3N, 3) or None)``.

    The gradient and its linearisation come from one trace (forward-over-reverse); the
    Hessian is that linear map applied to the 3N unit displacements, and the dipole
    derivatives the dipole's linearisation applied to them, ``chunk`` at a time
    (:func:`displacements_at_once`).
    """

    def evaluate(positions, args):
        gradient, hessian_vector_product = jax.linearize(lambda r: jax.grad(energy_fn)(r, *args), positions)
        directions = jnp.eye(positions.size, dtype=positions.dtype).reshape(positions.size, *positions.shape)
        hessian = _in_chunks(hessian_vector_product, directions, chunk)
        dipole_jacobian = None
        if dipole_fn is not None:
            _, dipole_change = jax.linearize(lambda r: dipole_fn(r, *args), positions)
            dipole_jacobian = _in_chunks(dipole_change, directions, chunk)
        return energy_fn(positions, *args), gradient, hessian, dipole_jacobian

    return compilation.jit_with_xla_defaults(evaluate)


if __name__ == "__main__":  # a user's guess at the tool: name the command (physnetjax.__main__.SUBCOMMAND_MODULES)
    import sys

    from physnetjax.__main__ import refuse_library_module

    sys.exit(refuse_library_module("spectra.harmonic"))
