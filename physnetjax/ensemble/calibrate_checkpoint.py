"""Calibrate an ensemble checkpoint on labelled frames: ``python -m physnetjax.ensemble calibrate``.

For an ensemble that was not calibrated when trained (e.g. one built by ``combine``):
the members' uncalibrated force spreads σ_i and the force errors ΔF_i of the ensemble
mean on every real atom of the given frames (held out of every member's training)
give the scale (:func:`physnetjax.ensemble.calibration.fit_calibration_scale`)::

    s² = (1/A) Σ_i |ΔF_i|² / σ_i²        (A atoms; maximum likelihood of ΔF_i ~ N(0, s²σ_i²/3 · I₃))

Atoms on which the members agree exactly (σ_i = 0: an isolated atom's forces are 0 for every member) carry no
information on s and are left out of A (:func:`physnetjax.ensemble.calibration.without_zero_spreads`; counted as
``atoms_without_spread``); one such frame in the data refused the whole calibration.

The checkpoint is written again with that ``calibration_scale`` and a
``calibration`` metadata record: the scale, the frames and atoms used, the mean
Gaussian NLL per atom before and after, and Spearman's ρ between each frame's largest
force spread and its force RMSE (and between ``energy_std`` and |ΔE|) — how well the
spread ranks the errors.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from physnetjax.checkpoint import load_checkpoint, save_checkpoint
from physnetjax.data import load_dataset
from physnetjax.data.dataset import length_unit_finding
from physnetjax.data.fingerprint import file_sha256
from physnetjax.data.frame_digests import (FrameRecord, checkpoint_metadata_sources, dataset_digests,
                                          recorded_frames)
from physnetjax.data.sanity import frames_by_file, label_sanity_findings
from physnetjax.ensemble.calibration import (fit_calibration_scale, gaussian_nll, spearman_rank_correlation,
                                             warn_few_frames, without_zero_spreads)
from physnetjax.ensemble.model import is_ensemble
from physnetjax.errors import LengthUnitWarning, PhysNetInputError, PhysNetInputWarning, warn_caller
from physnetjax.eval.evaluate import given_units, label_scale_findings
from physnetjax.eval.predictions import predict_dataset
from physnetjax.training_record import TrainingRecord

logger = logging.getLogger(__name__)

CRITERION = "maximum likelihood of Gaussian force errors: s^2 = mean_i |dF_i|^2 / sigma_i^2"


def calibration_record(predictions, dataset) -> dict:
    """The scale and its diagnostics from uncalibrated ensemble ``predictions`` of the frames of ``dataset``.

    Uses the frames with force labels (every real atom whose spread is not exactly 0) for the scale and the NLL, and
    frames with energy labels for the energy ρ; a ρ that is undefined (fewer than 2
    frames, or all values equal) is recorded as None with the reason logged.

    Raises:
      ValueError: no frame carries forces, or the spread is 0 on every real atom.
    """
    frames = np.flatnonzero(dataset.has_F)
    if frames.size == 0:
        raise ValueError("calibration needs frames with force labels; none of the given frames has forces")
    real = np.arange(dataset.max_atoms)[None, :] < dataset.N[frames, None]
    force_errors, spreads, agreeing = without_zero_spreads((predictions.forces[frames] - dataset.F[frames])[real],
                                                           predictions.forces_std[frames][real], "calibrate")
    if spreads.size == 0:
        raise ValueError("the members agree exactly (force spread 0) on every atom of the given frames: no scale "
                         "can be fitted (are the members identical, or are the frames isolated atoms?)")
    if agreeing:
        logger.info("calibrate: %d atom(s) on which the members agree exactly (force spread 0, e.g. isolated atoms) "
                    "left out of the fit", agreeing)
    scale = fit_calibration_scale(force_errors, spreads)
    warn_few_frames(int(frames.size), "calibrate")
    return {
        "calibration_scale": scale,
        "criterion": CRITERION,
        "frames": int(frames.size),
        "atoms": int(spreads.size),
        "atoms_without_spread": agreeing,
        "force_nll_per_atom_uncalibrated": gaussian_nll(force_errors, spreads, 1.0),
        "force_nll_per_atom_calibrated": gaussian_nll(force_errors, spreads, scale),
        **spread_rank_correlations(predictions, dataset),
    }


def spread_rank_correlations(predictions, dataset) -> dict:
    """How well an ensemble's spreads rank its errors on the frames of ``dataset``: Spearman's ρ.

    ``spearman_max_forces_std_vs_force_rmse``: each force-labelled frame's largest
    per-atom ``forces_std`` against its force RMSE sqrt((1/n) Σ_i |ΔF_i|²);
    ``spearman_energy_std_vs_abs_energy_error``: ``energy_std`` against |ΔE| over the
    energy-labelled frames. A ρ that is undefined (fewer than 2 frames, all values
    equal) is None, with the reason logged.
    """
    frames = np.flatnonzero(dataset.has_F)
    frame_rmse = [np.sqrt(np.mean(np.sum((predictions.forces[f] - dataset.F[f])[:n] ** 2, axis=-1)))
                  for f, n in zip(frames, dataset.N[frames])]
    frame_spread = [predictions.forces_std[f, :n].max() for f, n in zip(frames, dataset.N[frames])]
    energy_frames = np.flatnonzero(dataset.has_E)
    return {
        "spearman_max_forces_std_vs_force_rmse": _rank_correlation(frame_spread, frame_rmse, "forces"),
        "spearman_energy_std_vs_abs_energy_error": _rank_correlation(
            predictions.energy_std[energy_frames], np.abs(predictions.energy - dataset.E)[energy_frames], "energy"),
    }


def warn_training_data(dataset, data: Sequence, metadata: dict) -> None:
    """Warn (:class:`PhysNetInputWarning`) when frames of ``dataset`` (read from the files ``data``) are frames a
    member was trained on, whose errors are small: the fitted scale comes out too small.

    The trainer records its training frames (``training_frames``, :mod:`physnetjax.data.frame_digests`) and
    ``combine`` keeps each input's metadata under ``ensemble_sources``: frames are compared one by one, whatever file
    holds them. For a member whose checkpoint predates that record, a file with the content of its training data
    (``data_sha256``, {path: SHA-256}) is named instead.
    """
    sources = checkpoint_metadata_sources(metadata)
    known = recorded_frames(metadata)
    if known is not None:
        share = known.share_of(dataset_digests(dataset))
        if share.any:
            warn_caller(f"{share.describe()} of --data are frames members of this ensemble were trained on (same "
                        "atoms and positions): their small errors make the scale too small; calibrate on frames "
                        "held out of every member's training", PhysNetInputWarning)
    files = {sha: path for meta in sources if FrameRecord.from_metadata(meta) is None
             for path, sha in (meta.get("data_sha256") or {}).items()}
    for path in data if files else ():
        trained = files.get(file_sha256(path))
        if trained is not None:
            warn_caller(f"--data {path} has the content of the training data {trained} of this ensemble (SHA-256 "
                        "equal): it holds frames the members were trained on, whose small errors make the scale "
                        "too small; calibrate on frames held out of every member's training", PhysNetInputWarning)


def check_calibration_positions(dataset) -> None:
    """Refuse frames whose positions look like another length unit read as Å, file by file
    (:func:`physnetjax.data.dataset.length_unit_finding`: molecules in bohr sit 1.89× their covalent bond lengths
    apart).

    Every label of such a file stays consistent with its positions, so the predictions' errors there are those of
    stretched (or squeezed) molecules the members never saw, not of the ensemble: bohr positions fitted a scale of
    57 where 4.3 was right.

    Raises:
      PhysNetInputError: naming the file and the unit its positions look to be in.
    """
    for path, frames in frames_by_file(dataset.sources).items():
        finding = length_unit_finding(dataset.subset(frames))
        if finding is not None:
            raise PhysNetInputError(f"{path}: key 'R': {finding}; the calibration scale would be fitted to the "
                                    "errors of geometries in another unit: nothing written")


def check_calibration_labels(dataset, predictions, where: str, units: Optional[dict] = None) -> None:
    """Refuse force labels in other units or of the other sign than the ensemble's mean predictions, or that the
    data checks find implausible; warn about the rest of what the data checks find.

    The scale is fitted to the force errors: forces in eV/bohr read as eV/Å (0.529× the predictions) made them
    errors of the unit, not of the ensemble (a scale of 3.47 where 1.48 was right), stored in the checkpoint that MD
    then trusts; all-zero forces fitted 40 where 4.3 was right. Every finding of
    :func:`physnetjax.data.sanity.check_label_sanity` that concerns the forces (their scale, their consistency with
    the energies) is refused as well, but for their sign guessed from the virial alone (frames not thermally
    sampled, a compressed scan, push apart legitimately), which warns. Energies alone (only reported, in the rank
    correlation) warn, as in ``eval``; dipoles are not judged (the fit reads none, and this command has no unit
    option for them). ``units``: the :func:`~physnetjax.eval.evaluate.given_units` the data were read with.

    Raises:
      PhysNetInputError: the force labels are a multiple of the predictions
        (:func:`physnetjax.eval.evaluate.label_scale_findings`), naming the option that converts them, or the data
        checks find them implausible alone or against the energies.
    """
    findings = {quantity: message
                for quantity, message in label_scale_findings(dataset, predictions, where, units).items()
                if quantity != "dipoles"}
    skipped = {"dipoles", *(word for quantities in findings for word in quantities.split())}
    wrong = [message for quantity, message in findings.items() if "forces" in quantity]
    for quantities, message in label_sanity_findings(dataset, where):
        words = set(quantities.split())
        if words & skipped:
            continue
        if "forces" in words and "sign" not in words:  # the virial's guess of their sign only warns
            wrong.append(message)
        else:
            warn_caller(message, PhysNetInputWarning)
    if wrong:
        raise PhysNetInputError(f"{wrong[0]}; the calibration scale would be fitted to those errors: nothing written")
    for message in findings.values():
        warn_caller(message, PhysNetInputWarning)


def _rank_correlation(spreads, errors, what: str):
    spreads, errors = np.asarray(spreads), np.asarray(errors)
    if spreads.size < 2:
        logger.warning("no %s rank correlation: the data has %s", what,
                       f"no {what} labels" if spreads.size == 0 else f"only one frame with {what}")
        return None
    try:
        return spearman_rank_correlation(spreads, errors)
    except ValueError as error:
        logger.warning("no %s rank correlation: %s", what, error)
        return None


def calibrate_checkpoint(path, data: Sequence, out, *, batch_size: int = 32, dtype: Optional[str] = None,
                         overwrite: bool = False, energy_unit: str = "eV", force_unit=None,
                         force_sign: int = 1, keys: Optional[Mapping[str, str]] = None) -> dict:
    """Fit the ensemble checkpoint ``path``'s spread scale on the labelled frames ``data`` and save it to ``out``.

    Args:
      path: an ensemble checkpoint (its stored scale is ignored: the fit starts from 1).
      data: files of labelled frames (PhysNet ``.npz`` or ASE-readable), held out of every
        member's training; their positions are checked for another length unit read as Å
        (:func:`check_calibration_positions`), their energies and forces for plausible units and sign as the trainer
        checks them and against the ensemble's predictions (:func:`check_calibration_labels`; not their dipoles,
        which the fit does not read and this command has no unit option for).
      energy_unit, force_unit, force_sign, keys: of the data, as in :func:`physnetjax.data.load_dataset`
        (converted to eV and eV/Å; ``keys`` where the files hold the labels under other names).
      out: the calibrated checkpoint (``path`` itself with ``overwrite``).
      batch_size, dtype: as :func:`physnetjax.eval.predictions.predict_dataset`.

    Returns:
      The ``calibration`` record stored in the new checkpoint's metadata (module docstring).

    Raises:
      ValueError: ``path`` holds a single model, or the frames have no forces.
      PhysNetInputError: positions that look like another length unit read as Å, force labels in other units or of
        the other sign than the predictions, or that the data checks find implausible (all zero, other units
        than the energies); nothing is written.
      PhysNetInputWarning (a warning): the frames hold elements no member was trained on, or interatomic
        distances outside those all members were trained on (their errors and spreads are an untrained guess or
        an extrapolation, not what the scale should describe), or frames of ``data``
        are frames a member was trained on (:func:`warn_training_data`).
      CheckpointError, DataError: unreadable checkpoint or data. FileExistsError: ``out``
        exists and ``overwrite`` is False.
    """
    model, params, metadata = load_checkpoint(path, with_metadata=True)
    if not is_ensemble(model):
        raise ValueError(f"{path} holds a single model; calibration needs an ensemble (see combine)")
    with warnings.catch_warnings():  # positions in another unit refuse: check_calibration_positions says why
        warnings.simplefilter("ignore", LengthUnitWarning)
        dataset = load_dataset([str(p) for p in data], energy_unit=energy_unit, force_unit=force_unit,
                               force_sign=force_sign, keys=keys)
    check_calibration_positions(dataset)
    TrainingRecord.from_metadata(metadata).check_dataset(
        dataset.Z, dataset.N, dataset.Q, positions=dataset.R, cells=dataset.cell, where="--data", mask=dataset.has_E,
        consequence="the energies' error-spread correlation it reports includes it")
    warn_training_data(dataset, data, metadata)
    predictions = predict_dataset(model.clone(calibration_scale=1.0), params, dataset, batch_size=batch_size,
                                  dtype=dtype)
    check_calibration_labels(dataset, predictions, ", ".join(str(p) for p in data),
                             given_units(energy_unit, force_unit))
    record = calibration_record(predictions, dataset)
    record["data"] = [str(Path(p).resolve()) for p in data]
    save_checkpoint(out, model.clone(calibration_scale=record["calibration_scale"]), params,
                    {**metadata, "calibration": record}, overwrite=overwrite)
    return record
