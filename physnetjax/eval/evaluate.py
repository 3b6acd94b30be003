"""Errors of a model's predictions against the labels of a dataset: a pure computation.

For every label the data carries (and the model predicts), with e = prediction − reference:

    MAE = Σ|e| / K,   RMSE = √(Σ e² / K)

over K entries: frames for the energy per molecule (eV) and per atom (e/N_b, eV/atom)
and for the total charge Σ_i q_i (e); Cartesian components of every labelled atom for
forces (eV/Å), of every labelled frame for the dipole (e·Å; not predicted, NaN, for a periodic cell) and of every stress-labelled periodic
frame for the stress tensor (eV/Å³, all nine components). The metric names are
the trainer's (:func:`physnetjax.train.loss.metrics_from_totals`): ``energy_mae``,
``energy_per_atom_rmse``, ``forces_mae``, ``dipole_rmse``, ``charge_mae``, ...
Per element Z, the force MAE/RMSE over the components of the atoms of that element.
Per frame, the energy error and the force MAE/RMSE and largest atomic |ΔF_i|; the
worst frames are those with the largest force MAE and the largest |ΔE|.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np
from ase.data import chemical_symbols

from physnetjax.data import Dataset
from physnetjax.data.dataset import unit_factors
from physnetjax.data.sanity import SLIP_TOLERANCE, listed_ratios, nearest_slip, read_ratios
from physnetjax.errors import PhysNetInputWarning, warn_caller
from physnetjax.eval.predictions import Predictions
from physnetjax.train.loss import TERMS, metrics_from_totals

QUANTITIES = {
    "energy": ("energy per molecule", "eV"),
    "energy_per_atom": ("energy per atom", "eV/atom"),
    "forces": ("force components", "eV/Å"),
    "dipole": ("dipole components", "e·Å"),
    "charge": ("total charge", "e"),
    "stress": ("stress components", "eV/Å³"),
}
"""Metric prefix → (what is compared, unit), in table order."""

FRAME_COLUMNS = ("frame", "source", "config_type", "num_atoms", "energy_ref", "energy_pred", "energy_error",
                 "energy_error_per_atom", "forces_mae", "forces_rmse", "forces_max_atom_error",
                 "dipole_error_norm", "charge_error", "stress_max_error", "energy_std", "forces_max_atom_std")
"""Per-frame table columns (eV, eV/atom, eV/Å, e·Å, e, eV/Å³: the largest |Δσ_ab|; NaN where the frame lacks the
label). The last two are an
ensemble's calibrated spreads (``energy_std`` eV, the largest per-atom ``forces_std`` eV/Å; NaN for one model)."""


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Errors of one model on one dataset (units: eV, eV/atom, eV/Å, e·Å, e).

    Fields:
      metrics: {``<quantity>_mae``/``_rmse``: float} for the labels present (see module docstring).
      counts: {quantity: number of compared entries} (frames, or force/dipole components).
      element_forces: {element symbol: {"atoms": int, "mae": float, "rmse": float}} in Z order.
      config_types: {kind: {"frames": int, "energy_per_atom_mae"/"_rmse" (eV/atom), "forces_mae"/"_rmse" (eV/Å),
        "forces_relative_rmse" (% of the RMS reference force component; None where every reference force is 0,
        as for isolated atoms)}} per frame kind
        (:attr:`~physnetjax.data.Dataset.config_type`, MACE's ``config_type``) in order of first appearance; a
        kind without energy (forces) labels lacks those keys.
      frames: {column of :data:`FRAME_COLUMNS`: (M,) array}.
      worst_forces, worst_energy: frame indices, largest force MAE / |energy error| first.
      uncertainty: an ensemble's spreads against its errors (None for one model):
        ``force_nll_per_atom`` (mean Gaussian NLL of the force errors under the
        calibrated spreads, :func:`~physnetjax.ensemble.calibration.gaussian_nll`),
        ``force_error_over_spread`` (sqrt of the mean |ΔF_i|²/σ_i²: 1 when the
        calibration holds on these frames) and Spearman's ρ of spreads against errors
        (:func:`~physnetjax.ensemble.calibrate_checkpoint.spread_rank_correlations`).
    """

    metrics: dict
    counts: dict
    element_forces: dict
    frames: dict
    worst_forces: list
    worst_energy: list
    uncertainty: Optional[dict] = None
    config_types: dict = dataclasses.field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-ready dict: metrics, counts, per-element force errors, worst frames (rows of ``frames``)."""
        def row(k):
            return {c: _plain(self.frames[c][k]) for c in FRAME_COLUMNS}

        return {
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "counts": dict(self.counts),
            "element_forces": self.element_forces,
            "config_types": self.config_types,
            "worst_frames": {"forces": [row(k) for k in self.worst_forces],
                             "energy": [row(k) for k in self.worst_energy]},
            "uncertainty": self.uncertainty,
        }


def _plain(value):
    """NumPy scalar → Python value; NaN → None (JSON null)."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and np.isnan(value) else value


def _totals(errors: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[Σ|e|, Σe², count] over the entries of ``errors`` where ``mask`` (broadcast) is True."""
    mask = np.broadcast_to(mask, errors.shape)
    picked = errors[mask]
    return np.array([np.abs(picked).sum(), (picked * picked).sum(), float(picked.size)])


def evaluate(dataset: Dataset, predictions: Predictions, worst: int = 5) -> EvalResult:
    """Compare ``predictions`` (from :func:`~physnetjax.eval.predictions.predict_dataset`) with the labels.

    Args:
      dataset: M frames with their labels and ``has_*`` flags (internal units).
      predictions: the model's outputs on the same frames.
      worst: how many worst frames to list per criterion.

    Returns:
      :class:`EvalResult`; a quantity the data lacks (or the model does not predict) is absent.

    Raises:
      ValueError: predictions of another number of frames, or ``worst`` < 0.
    """
    M, n = dataset.Z.shape
    if predictions.energy.shape != (M,) or predictions.forces.shape != (M, n, 3):
        raise ValueError(f"predictions are for {predictions.energy.shape[0]} frames of "
                         f"{predictions.forces.shape[1]} atoms, the dataset has {M} frames of {n}")
    if worst < 0:
        raise ValueError(f"worst must be >= 0, received {worst}")
    atoms = dataset.N.astype(np.float64)
    real = np.arange(n)[None, :] < dataset.N[:, None]
    has_e, has_f = dataset.has_E, dataset.has_F[:, None] & real
    energy_error = predictions.energy - dataset.E
    force_error = predictions.forces - dataset.F
    totals = {term: np.zeros(3) for term in TERMS}
    totals["E"] = _totals(energy_error, has_e)
    totals["Ea"] = _totals(energy_error / atoms, has_e)
    totals["F"] = _totals(force_error, has_f[..., None])
    has_d = has_q = np.zeros(M, bool)
    if predictions.charges is not None:
        has_d, has_q = dataset.has_D & np.isfinite(predictions.dipole).all(axis=1), dataset.has_Q
        totals["D"] = _totals(predictions.dipole - dataset.D, has_d[:, None])
        totals["Q"] = _totals(predictions.total_charge - dataset.Q, has_q)
    has_s = dataset.has_S & (predictions.stress is not None)
    stress_error = np.full((M, 3, 3), np.nan)
    if has_s.any():
        stress_error[has_s] = predictions.stress[has_s] - dataset.S[has_s]
    totals["S"] = _totals(stress_error, has_s[:, None, None])
    metrics = metrics_from_totals(totals)
    names = {"E": "energy", "Ea": "energy_per_atom", "F": "forces", "D": "dipole", "Q": "charge", "S": "stress"}
    counts = {names[t]: int(totals[t][2]) for t in TERMS if totals[t][2] > 0}

    element_forces = {}
    for z in np.unique(dataset.Z[has_f]):
        picked = force_error[has_f & (dataset.Z == z)]
        element_forces[chemical_symbols[int(z)]] = {
            "atoms": int(picked.shape[0]), "mae": float(np.abs(picked).mean()),
            "rmse": float(np.sqrt((picked * picked).mean())),
        }

    config_types = {}
    for kind in dict.fromkeys(dataset.config_type.tolist()):
        of_kind = dataset.config_type == kind
        errors = metrics_from_totals({"Ea": _totals(energy_error / atoms, has_e & of_kind),
                                      "F": _totals(force_error, (has_f & of_kind[:, None])[..., None])})
        entry = {"frames": int(of_kind.sum()), **{k: float(v) for k, v in errors.items()}}
        if "forces_rmse" in errors:
            reference = dataset.F[has_f & of_kind[:, None]]
            scale = float(np.sqrt(np.mean(reference ** 2)))
            entry["forces_relative_rmse"] = 100.0 * errors["forces_rmse"] / scale if scale > 0 else None  # F = 0
        config_types[kind] = entry

    frame_f = dataset.has_F
    components = np.maximum(3.0 * atoms, 1.0)
    real_error = np.where(real[..., None], force_error, 0.0)
    nan = np.full(M, np.nan)
    frames = {
        "frame": np.arange(M), "source": dataset.sources, "config_type": dataset.config_type, "num_atoms": dataset.N,
        "energy_ref": np.where(has_e, dataset.E, nan), "energy_pred": predictions.energy,
        "energy_error": np.where(has_e, energy_error, nan),
        "energy_error_per_atom": np.where(has_e, energy_error / atoms, nan),
        "forces_mae": np.where(frame_f, np.abs(real_error).sum(axis=(1, 2)) / components, nan),
        "forces_rmse": np.where(frame_f, np.sqrt((real_error ** 2).sum(axis=(1, 2)) / components), nan),
        "forces_max_atom_error": np.where(frame_f, np.linalg.norm(real_error, axis=-1).max(axis=1), nan),
        "dipole_error_norm": nan, "charge_error": nan,
        "stress_max_error": np.where(has_s, np.abs(stress_error).max(axis=(1, 2)), nan),
        "energy_std": nan, "forces_max_atom_std": nan,
    }
    if predictions.charges is not None:
        frames["dipole_error_norm"] = np.where(has_d, np.linalg.norm(predictions.dipole - dataset.D, axis=1), nan)
        frames["charge_error"] = np.where(has_q, predictions.total_charge - dataset.Q, nan)
    uncertainty = None
    if predictions.energy_std is not None:
        frames["energy_std"] = predictions.energy_std
        frames["forces_max_atom_std"] = np.where(real, predictions.forces_std, 0.0).max(axis=1)
        uncertainty = _uncertainty(dataset, predictions, force_error[has_f], predictions.forces_std[has_f])
    return EvalResult(
        metrics=metrics, counts=counts, element_forces=element_forces, config_types=config_types, frames=frames,
        worst_forces=_largest(frames["forces_mae"], worst),
        worst_energy=_largest(np.abs(frames["energy_error"]), worst), uncertainty=uncertainty,
    )


def _uncertainty(dataset: Dataset, predictions: Predictions, force_errors, force_spreads) -> dict:
    """:attr:`EvalResult.uncertainty` from the (A, 3) force errors and (A,) spreads of the force-labelled atoms; atoms
    on which the members agree exactly (spread 0: isolated atoms) are left out of the NLL and the error/spread ratio,
    which they made None for the whole data set."""
    from physnetjax.ensemble.calibrate_checkpoint import spread_rank_correlations
    from physnetjax.ensemble.calibration import fit_calibration_scale, gaussian_nll, without_zero_spreads

    record = {"force_nll_per_atom": None, "force_error_over_spread": None}
    force_errors, force_spreads, _ = without_zero_spreads(force_errors, force_spreads, "eval")  # isolated atoms
    if force_spreads.size and np.all(force_spreads > 0) and np.any(force_errors):
        record["force_nll_per_atom"] = gaussian_nll(force_errors, force_spreads, 1.0)
        record["force_error_over_spread"] = fit_calibration_scale(force_errors, force_spreads)
    return {**record, **spread_rank_correlations(predictions, dataset)}


def _largest(values: np.ndarray, count: int) -> list:
    """Indices of the ``count`` largest finite ``values``, largest first (ties: lower index first)."""
    finite = np.nonzero(np.isfinite(values))[0]
    order = finite[np.argsort(-values[finite], kind="stable")]
    return [int(k) for k in order[:count]]


LABEL_SCALE_RANGE = (0.5, 2.0)
"""Accepted slope of the labels on the model's predictions (1 when both are in the same units), at any cosine of
at least :data:`MIN_SCALE_CORRELATION`; within it, a slope that fits a unit slip is judged at
:data:`SHARP_SCALE_CORRELATION`. Beyond it, a slope that fits no unit slip counts only from that cosine on: a
2-epoch ensemble (EMA weights, predictions shrunk toward the mean) had energy labels 5.54× its predictions at
cosine 0.96, in the right units, and was told to set --energy-unit."""

MIN_SCALE_CORRELATION = 0.9
"""The slope is judged only when labels and predictions agree at least this well in direction (cosine).

The least-squares slope is s = cos · |labels| / |predictions|: a poor model that predicts a third of the labels'
spread at cosine 0.8 has s = 2.4 with labels in the right units (measured: a legacy checkpoint on DNA-base data,
energies and forces 2.3x at cosine 0.78-0.80; a 2-epoch model's dipoles 4.2x at 0.72). A unit slip scales the
labels of a model that fits them, so its cosine stays that of a usable model (0.99+ for the shipped ones)."""

SHARP_SCALE_CORRELATION = 0.98
"""From this cosine on, a slope inside :data:`LABEL_SCALE_RANGE` that fits a unit slip (eV/bohr read as eV/Å: 0.529,
e·bohr read as e·Å: 1.89) is one.

A model that predicts the mean label given the structure (what least-squares training aims at) has slope exactly 1:
⟨L, P⟩ = ⟨E[L|x], P⟩ = |P|². Its spread about 1 grows as the model gets worse; at cosine ≥ 0.98 its predictions are
close enough to the labels that a slope ≤ 0.66 or ≥ 1.5 (within :data:`physnetjax.data.sanity.SLIP_TOLERANCE` of
those slips) is not the model's: the three shipped models measure slopes 1.000-1.015 at cosines 0.995-1.000
(forces, dipoles, energies; 300 frames of their 500 K data sets)."""


def _scale_slipped(quantity: str, slope: float, cosine: float) -> bool:
    """Whether labels ``slope`` × the predictions at ``cosine`` (≥ :data:`MIN_SCALE_CORRELATION`) are in other
    units than the predictions (or of the other sign)."""
    if slope < 0:
        return True
    fits_slip = nearest_slip(slope, read_ratios(quantity)) is not None
    if not LABEL_SCALE_RANGE[0] <= slope <= LABEL_SCALE_RANGE[1]:  # no slip's ratio: a unit slip only for a model
        return fits_slip or cosine >= SHARP_SCALE_CORRELATION     # that fits (an undertrained one shrinks)
    return cosine >= SHARP_SCALE_CORRELATION and abs(np.log(slope)) > np.log(SLIP_TOLERANCE) and fits_slip


def _scale_fit(reference: np.ndarray, predicted: np.ndarray) -> Optional[tuple[float, float]]:
    """(slope s of reference ≈ s · predicted through 0, cosine of the two vectors); None below 3 entries or for
    zeros."""
    if reference.size < 3 or not np.any(reference) or not np.any(predicted):
        return None
    slope = float((reference * predicted).sum() / (predicted * predicted).sum())
    cosine = float((reference * predicted).sum() / np.sqrt((reference**2).sum() * (predicted**2).sum()))
    return slope, cosine


UNIT_OPTIONS = {
    "forces": "--force-unit (default: the --energy-unit per Å)",
    "dipoles": "--dipole-unit",
    "energies": "--energy-unit",
}
"""Quantity → the option that converts its labels."""


def given_units(energy_unit: str = "eV", force_unit: Optional[str] = None, dipole_unit: str = "eA") -> dict:
    """{quantity: (the option that converted its labels, its factor to the internal unit)} of a command's unit
    options, for :func:`label_scale_findings` (units in the forms :func:`physnetjax.data.load_npz` takes)."""
    energy, force, dipole = unit_factors(energy_unit, force_unit, dipole_unit)
    return {"energies": (f"--energy-unit {energy_unit}", energy),
            "forces": (f"--energy-unit {energy_unit} (per Å)" if force_unit is None else f"--force-unit {force_unit}",
                       force),
            "dipoles": (f"--dipole-unit {dipole_unit}", dipole)}


def unit_hint(quantity: str, slope: float, given: Optional[tuple[str, float]] = None) -> str:
    """The option to set for labels ``slope`` × the predictions, naming the unit slip that gives that slope if one
    of :data:`physnetjax.data.sanity.QUANTITY_SLIPS` does, else listing the slopes of them all. ``given``: (option,
    factor) of a unit conversion the labels went through: a slope that is its factor says the labels were in the
    internal unit already (eV data read with ``--energy-unit kcal/mol``: 0.0434, which hartree read as eV lies
    near too)."""
    if given is not None and given[1] != 1.0 and abs(math.log(slope / given[1])) < math.log(SLIP_TOLERANCE):
        return (f"the labels look already in the model's units ({slope:.3g} is the factor of {given[0]}): drop "
                f"{given[0].split(' (')[0]}")
    slips = read_ratios(quantity)
    name = nearest_slip(slope, slips)
    if name is not None:
        return f"set {UNIT_OPTIONS[quantity]}: {slope:.3g} fits {name}"
    return f"set {UNIT_OPTIONS[quantity]} (slopes of common slips: {listed_ratios(slips)})"


SAME_SLIP_RATIO = 1.2
"""Energy and force slopes within this factor of each other are reported as one slip of the energy unit."""


def label_scale_findings(dataset: Dataset, predictions: Predictions, where: str = "data",
                         units: Optional[dict] = None) -> dict[str, str]:
    """{quantity: message} for labels that are a multiple of the model's prediction (no warning issued).

    Quantities ``"forces"``, ``"dipoles"``, ``"energies"`` as judged by :func:`check_label_scale`; energies
    and forces off by the same factor (within :data:`SAME_SLIP_RATIO`: one energy unit slip) give one message,
    under ``"energies forces"``. ``units``: the :func:`given_units` the labels were read with (None: not known),
    whose factors :func:`unit_hint` recognises.
    """
    units = units or {}
    n = dataset.max_atoms
    real = np.arange(n)[None, :] < dataset.N[:, None]
    pairs = {"forces": (dataset.F[dataset.has_F[:, None] & real], predictions.forces[dataset.has_F[:, None] & real])}
    if predictions.dipole is not None:
        pairs["dipoles"] = (dataset.D[dataset.has_D], predictions.dipole[dataset.has_D])
    reference, predicted = [], []
    frames = np.nonzero(dataset.has_E)[0]
    _, molecule = np.unique(dataset.Z[frames], axis=0, return_inverse=True)
    for group in np.unique(molecule):
        picked = frames[molecule.reshape(-1) == group]
        if len(picked) > 1:
            reference.append(dataset.E[picked] - dataset.E[picked].mean())
            predicted.append(predictions.energy[picked] - predictions.energy[picked].mean())
    if reference:
        pairs["energies"] = (np.concatenate(reference), np.concatenate(predicted))
    judged = {}
    for name, (ref, pred) in pairs.items():
        fit = _scale_fit(np.ravel(ref), np.ravel(pred))
        if fit is not None and abs(fit[1]) >= MIN_SCALE_CORRELATION:
            judged[name] = (fit[0], fit[1], np.size(ref))
    flagged = {name: value for name, value in judged.items() if _scale_slipped(name, value[0], value[1])}
    findings = {}
    if {"energies", "forces"} <= set(flagged) and flagged["forces"][0] > 0 and (
            abs(np.log(flagged["forces"][0] / flagged["energies"][0])) < np.log(SAME_SLIP_RATIO)):
        (se, ce, ne), (sf, cf, nf) = flagged.pop("energies"), flagged.pop("forces")
        findings["energies forces"] = (
            f"{where}: the reference energies (about each molecule's mean) and forces are {se:.3g}× and {sf:.3g}× "
            f"the model's predictions (least squares over {ne} and {nf} values, cosine {ce:.2f} and {cf:.2f}; 1 for "
            f"labels in the model's units): energies in other units than given, forces in that unit per Å: "
            f"{unit_hint('energies', se, units.get('energies'))}, the force unit follows; its errors compare "
            "unlike quantities")
    for name, (slope, cosine, size) in flagged.items():
        if name == "forces" and slope < 0:
            hint = "forces stored as +dE/dR (gradients): pass --force-sign -1"
            if _scale_slipped(name, -slope, -cosine):
                hint = f"{hint}, and they are in other units than given: {unit_hint(name, -slope, units.get(name))}"
        elif slope < 0:  # no unit turns a quantity around
            hint = (f"{name} of the opposite sign to the model's, which no unit explains: labels of another sign "
                    "convention, or a model wrong for these frames (a charge state or composition it never saw)")
        else:
            hint = f"{name} in other units than given: {unit_hint(name, slope, units.get(name))}"
        label = "energies (about each molecule's mean)" if name == "energies" else name
        findings[name] = (f"{where}: the reference {label} are {slope:.3g}× the model's predictions (least squares "
                          f"over {size} values, cosine {cosine:.2f}; 1 for labels in the model's units): "
                          f"{hint}; its errors compare unlike quantities")
    return findings


def check_label_scale(dataset: Dataset, predictions: Predictions, where: str = "data") -> list[str]:
    """Warn when a label is a multiple of the model's prediction (units or sign of the data set wrong).

    Least-squares slope through zero of the labels on the predictions: force
    components, dipole components, and energies minus their mean over the frames of
    each molecule (same atomic numbers; the element references cancel). A model of
    any use gives s ≈ 1; s ≈ −1 for forces means the file stores +dE/dR, s ≈ 23.06
    kcal/mol read as eV, 0.0367 hartree, 4.80 Debye read as e·Å: the message names the
    slip of :data:`physnetjax.data.sanity.QUANTITY_SLIPS` nearest to s. Judged only where
    labels and predictions agree in direction (cosine ≥ :data:`MIN_SCALE_CORRELATION`
    in magnitude), so a poor model says nothing. Returns the messages (also issued
    as :class:`PhysNetInputWarning`, one per quantity); the metrics are left as computed.
    """
    messages = list(label_scale_findings(dataset, predictions, where).values())
    for message in messages:
        warn_caller(message, PhysNetInputWarning)
    return messages
