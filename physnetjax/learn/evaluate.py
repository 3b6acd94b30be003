"""Test error of a round's ensemble: energy and force MAE of the member mean on a fixed test set."""

from __future__ import annotations

import numpy as np

from physnetjax.checkpoint import load_checkpoint
from physnetjax.data import Dataset
from physnetjax.predict import predict
from physnetjax.training_record import TrainingRecord


def test_errors(checkpoint, test: Dataset) -> dict:
    """``energy_mae`` (eV, per molecule) and ``forces_mae`` (eV/Å, per Cartesian component of the
    real atoms) of ``checkpoint`` on ``test``, plus ``frames``; frames without a label are skipped
    for that label."""
    model, params, metadata = load_checkpoint(checkpoint, with_metadata=True)
    record = TrainingRecord.from_metadata(metadata)
    energy_errors, force_errors = [], []
    for k in range(len(test)):
        n = int(test.N[k])
        out = predict(model, params, test.Z[k, :n], test.R[k, :n], total_charge=float(test.Q[k]),
                      training_record=record)
        if test.has_E[k]:
            energy_errors.append(abs(float(out["energy"]) - test.E[k]))
        if test.has_F[k]:
            force_errors.append(np.abs(np.asarray(out["forces"], np.float64) - test.F[k, :n]).ravel())
    return {
        "frames": len(test),
        "energy_mae": float(np.mean(energy_errors)) if energy_errors else None,
        "forces_mae": float(np.mean(np.concatenate(force_errors))) if force_errors else None,
    }
