"""Files written by ``python -m physnetjax.eval``: per-frame CSV, JSON summary, parity PNGs, predictions.

``--out DIR`` receives::

    frames.csv          one row per frame (columns: :data:`~physnetjax.eval.evaluate.FRAME_COLUMNS`)
    summary.json        schema "physnetjax.eval" version 1: checkpoint, data, data_units (of
                        the input files), units (of every error: eV, eV/Å, e·Å, e), dtype, weights
                        ("ema": the checkpoint's saved weights, EMA for a trainer checkpoint;
                        "raw": its train state's or a legacy checkpoint's raw weights), metrics,
                        counts, per-element force errors, worst frames, model config, and
                        ``training_frames``: how many of the frames the model was trained on
                        ({matched, compared, total}: matched among compared of total frames;
                        compared < total when the checkpoint keeps a sample of its training
                        frames), null when the checkpoint does not record them; and
                        ``validation_frames``: likewise of its validation frames (which chose
                        its best epoch)
    parity_energy.png, parity_forces.png (+ parity_dipole.png, parity_charge.png with charges, parity_stress.png
    in GPa with stress labels)

``--write-predictions FILE.extxyz`` stores every frame, with its cell and pbc, and the model's values as its
calculator results (``energy``, per-atom ``energies`` summing to it, ``forces``, ``stress`` of a periodic cell, and
with charges ``charges`` per atom and ``dipole`` of a molecule: what ``atoms.get_potential_energy()``,
``atoms.get_potential_energies()`` etc. return after ``ase.io.read``)
and the reference labels beside them as ``REF_energy``, ``REF_dipole``, ``REF_charge``, ``REF_stress`` (3×3)
(``atoms.info``) and ``REF_forces`` (``atoms.arrays``); a label the frame lacks is
left out. Units: eV, eV/Å, e, e·Å, eV/Å³. ``info["charge"]`` keeps the total charge used, and a frame's
per-frame loss weights other than 1 are kept as read (``config_weight``, ``config_energy_weight``, ...), as is its
``config_type``.
An ensemble adds its calibrated spreads: ``info["energy_std"]`` (eV),
``arrays["forces_std"]`` (eV/Å per atom) and ``arrays["energies_std"]`` (eV per atom); ``frames.csv`` has them per frame
(``energy_std``, ``forces_max_atom_std``) and ``summary.json`` how well they rank and
match the errors (``uncertainty``; null for one model).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Optional

import ase
import ase.io
import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator

from physnetjax.data import Dataset
from physnetjax.data.dataset import CONFIG_TYPE_KEY, DEFAULT_CONFIG_TYPE, WEIGHT_KEYS
from physnetjax.data.frame_digests import RecordedShare
from physnetjax.eval.evaluate import FRAME_COLUMNS, EvalResult
from physnetjax.eval.predictions import Predictions
from physnetjax.jsonlines import written_whole
from physnetjax.train import plots
from physnetjax.units import GPA

SCHEMA = "physnetjax.eval"
SCHEMA_VERSION = 1
PREDICTION_SUFFIXES = (".xyz", ".extxyz")


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    return str(value)


def write_frames_csv(result: EvalResult, path) -> None:
    """One row per frame; empty cells where the frame lacks the label."""
    with written_whole(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FRAME_COLUMNS)
        for k in range(len(result.frames["frame"])):
            writer.writerow([_cell(result.frames[c][k]) for c in FRAME_COLUMNS])


ERROR_UNITS = {"energy": "eV", "forces": "eV/Å", "dipole": "e·Å", "charge": "e", "stress": "eV/Å³"}
"""Units of every error in ``summary.json`` (the input files' own units are its ``data_units``)."""


def write_summary(result: EvalResult, path, *, checkpoint: str, data: list, units: dict, model_config: dict,
                  dtype: str, recorded: dict[str, Optional[RecordedShare]], weights: str = "ema") -> None:
    """The JSON summary (see module docstring); ``recorded``: the training and the validation frames among the
    data, by summary key (None: unknown); ``weights``: which weights were evaluated (``--weights``: "ema", the
    checkpoint's saved weights, or "raw")."""
    summary = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "checkpoint": checkpoint, "data": data,
               "data_units": units, "units": dict(ERROR_UNITS), "dtype": dtype,
               "weights": weights,
               "num_frames": len(result.frames["frame"]),
               **{key: None if share is None else dataclasses.asdict(share) for key, share in recorded.items()},
               **result.summary(), "model": model_config}
    with written_whole(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")


PARITY_QUANTITIES = ("energy", "forces", "dipole", "charge", "stress")
"""The quantities :func:`write_parity_plots` may draw, each to ``parity_{quantity}.png``."""

OUTPUT_NAMES = ("frames.csv", "summary.json", *(f"parity_{name}.png" for name in PARITY_QUANTITIES))
"""The files ``eval --out DIR`` writes in DIR besides its ``config.toml``."""


def write_parity_plots(dataset: Dataset, predictions: Predictions, directory) -> list[Path]:
    """Parity PNGs of every compared quantity into ``directory``; returns the files written."""
    directory = Path(directory)
    atoms = dataset.has_F[:, None] & (np.arange(dataset.max_atoms)[None, :] < dataset.N[:, None])
    has_e, has_d, has_q = dataset.has_E, dataset.has_D, dataset.has_Q
    panels = [("energy", "energy", "eV", dataset.E[has_e], predictions.energy[has_e]),
              ("forces", "force components", "eV/Å", dataset.F[atoms], predictions.forces[atoms])]
    if predictions.charges is not None:
        panels += [("dipole", "dipole components", "e·Å", dataset.D[has_d], predictions.dipole[has_d]),
                   ("charge", "total charge", "e", dataset.Q[has_q], predictions.total_charge[has_q])]
    if predictions.stress is not None:
        has_s = dataset.has_S
        panels.append(("stress", "stress components", "GPa", dataset.S[has_s] / GPA, predictions.stress[has_s] / GPA))
    done = []
    for name, quantity, unit, reference, predicted in panels:
        path = directory / f"parity_{name}.png"
        if not reference.size:
            continue
        with written_whole(path) as tmp:
            drawn = plots.parity(reference, predicted, quantity, unit, tmp)
        if drawn:
            done.append(path)
    return done


def check_predictions_path(path) -> Path:
    """``path`` if it names an extxyz file in an existing directory, else ValueError."""
    path = Path(path)
    if path.suffix.lower() not in PREDICTION_SUFFIXES:
        raise ValueError(f"--write-predictions must end in {' or '.join(PREDICTION_SUFFIXES)} (extxyz), "
                         f"received {str(path)!r}")
    return path


def write_predictions(dataset: Dataset, predictions: Predictions, path) -> None:
    """Every frame as extxyz with model values and ``REF_*`` labels (see module docstring), with its cell
    (:attr:`Dataset.cell`), periodic along the cell's non-zero rows."""
    frames = []
    for k in range(len(dataset)):
        n = int(dataset.N[k])
        atoms = ase.Atoms(numbers=dataset.Z[k, :n], positions=dataset.R[k, :n], cell=dataset.cell[k],
                          pbc=dataset.cell[k].any(axis=1))
        atoms.info["charge"] = float(dataset.Q[k])
        results = {"energy": float(predictions.energy[k]), "forces": predictions.forces[k, :n]}
        if predictions.energies is not None:
            results["energies"] = predictions.energies[k, :n]
        if predictions.stress is not None and np.isfinite(predictions.stress[k]).all():
            results["stress"] = predictions.stress[k]
        if predictions.charges is not None:
            results["charges"] = predictions.charges[k, :n]
            if np.isfinite(predictions.dipole[k]).all():
                results["dipole"] = predictions.dipole[k]
        if predictions.energy_std is not None:
            atoms.info["energy_std"] = float(predictions.energy_std[k])
            atoms.arrays["forces_std"] = np.array(predictions.forces_std[k, :n])
            if predictions.energies_std is not None:
                atoms.arrays["energies_std"] = np.array(predictions.energies_std[k, :n])
        if dataset.has_E[k]:
            atoms.info["REF_energy"] = float(dataset.E[k])
        if dataset.has_F[k]:
            atoms.arrays["REF_forces"] = np.array(dataset.F[k, :n])
        if dataset.has_D[k]:
            atoms.info["REF_dipole"] = np.array(dataset.D[k])
        if dataset.has_Q[k]:
            atoms.info["REF_charge"] = float(dataset.Q[k])
        if dataset.has_S[k]:
            atoms.info["REF_stress"] = np.array(dataset.S[k])
        atoms.info.update({key: float(weight) for key, weight in zip(WEIGHT_KEYS, dataset.weights[k]) if weight != 1.0})
        if dataset.config_type[k] != DEFAULT_CONFIG_TYPE:
            atoms.info[CONFIG_TYPE_KEY] = dataset.config_type[k]
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    with written_whole(path) as tmp:
        ase.io.write(tmp, frames, format="extxyz")
