"""Learning-curve and parity PNGs (needs matplotlib, the optional extra ``physnetjax[plot]``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from physnetjax.units import GPA

logger = logging.getLogger(__name__)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        logger.warning("matplotlib is not installed; skipping plots (pip install 'physnetjax[plot]')")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve(rows: list[dict], path) -> bool:
    """Train/valid loss and valid energy/force (and stress, in GPa) MAE per epoch (log scale) → ``path``; False
    without matplotlib."""
    plt = _pyplot()
    if plt is None or not rows:
        return False
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_mae) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.semilogy(epochs, [r["train_loss"] for r in rows], label="train (raw params)")
    ax_loss.semilogy(epochs, [r["valid_loss"] for r in rows], label="valid (EMA)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    for key, label, scale in (("valid_energy_mae", "energy MAE / eV", 1.0),
                              ("valid_forces_mae", "force MAE / eV/Å", 1.0),
                              ("valid_stress_mae", "stress MAE / GPa", GPA)):
        values = [r.get(key) for r in rows]
        if all(v is not None and v != "" for v in values):
            ax_mae.semilogy(epochs, [float(v) / scale for v in values], label=label)
    ax_mae.set_xlabel("epoch")
    ax_mae.set_ylabel("validation MAE (EMA)")
    ax_mae.legend()
    fig.tight_layout()
    fig.savefig(Path(path), dpi=120)
    plt.close(fig)
    return True


def parity(reference: np.ndarray, predicted: np.ndarray, quantity: str, unit: str, path) -> bool:
    """Scatter of predicted against reference values with the y = x line → ``path``."""
    plt = _pyplot()
    if plt is None or reference.size == 0:
        return False
    reference, predicted = np.ravel(reference), np.ravel(predicted)
    mae = float(np.mean(np.abs(predicted - reference)))
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(reference, predicted, s=4, alpha=0.5)
    low, high = float(min(reference.min(), predicted.min())), float(max(reference.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="black", lw=0.8)
    ax.set_xlabel(f"reference {quantity} / {unit}")
    ax.set_ylabel(f"predicted {quantity} / {unit}")
    ax.set_title(f"{quantity}: MAE {mae:.4g} {unit}")
    fig.tight_layout()
    fig.savefig(Path(path), dpi=120)
    plt.close(fig)
    return True
