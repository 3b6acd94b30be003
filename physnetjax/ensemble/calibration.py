"""Calibration of an ensemble's spread against observed errors, and how well the spread ranks the errors.

Criterion: the errors e_i (prediction − reference) of M validation samples are
modelled as Gaussian with the ensemble spread σ_i scaled by one factor s. For a
d-component quantity (d = 1 for energies and charges, 3 for forces and dipoles)
whose spread is the RMS distance of a member from the mean (as
:mod:`physnetjax.ensemble.model` defines ``forces_std``), each component has
variance s²σ_i²/d::

    e_i ~ N(0, (s² σ_i² / d) · I_d)

    NLL(s) = Σ_i [ (d/2) log(2π s² σ_i² / d) + d |e_i|² / (2 s² σ_i²) ]

    ∂NLL/∂(s²) = Σ_i [ d / (2 s²) − d |e_i|² / (2 s⁴ σ_i²) ] = 0
    ⇒  s² = (1/M) Σ_i |e_i|² / σ_i²

The stationary point is the unique minimum of the NLL (NLL → ∞ for s → 0 and
s → ∞, one stationary point), i.e. the maximum-likelihood scale, and d drops out.
After calibration the mean of |e_i|²/(sσ_i)² is 1: the spread matches the
observed error on average. :func:`spearman_rank_correlation` tells how well the
spread orders the errors (1: the most uncertain frames are the worst ones).
"""

from __future__ import annotations


import numpy as np

from physnetjax.errors import PhysNetInputWarning, warn_caller


MIN_CALIBRATION_FRAMES = 20
"""Frames below which a fitted calibration scale is reported as uncertain (:func:`warn_few_frames`): s² is a mean of
|e|²/σ² over atoms whose small spreads dominate it, so a handful of frames can put s off by orders of magnitude."""


def warn_few_frames(frames: int, where: str) -> None:
    """Warn (:class:`~physnetjax.errors.PhysNetInputWarning`) when ``frames`` < :data:`MIN_CALIBRATION_FRAMES`."""
    if frames < MIN_CALIBRATION_FRAMES:
        warn_caller(f"{where}: the calibration scale is fitted on only {frames} frame(s) (< "
                    f"{MIN_CALIBRATION_FRAMES}): it can be off by orders of magnitude; fit it on more held-out "
                    "frames (python -m physnetjax.ensemble calibrate)", PhysNetInputWarning)


def _errors_and_spreads(errors, spreads) -> tuple[np.ndarray, np.ndarray]:
    """(M, d) float64 errors and (M,) spreads, checked (shapes, finite, spreads > 0)."""
    e = np.asarray(errors, np.float64)
    sigma = np.asarray(spreads, np.float64)
    if sigma.ndim != 1 or sigma.shape[0] == 0:
        raise ValueError(f"spreads must be a non-empty 1-d array (M,), received shape {sigma.shape}")
    if e.shape[:1] != sigma.shape or e.ndim > 2:
        raise ValueError(f"errors must have shape (M,) or (M, d) with M = {sigma.shape[0]} spreads, "
                         f"received shape {e.shape}")
    e = e.reshape(sigma.shape[0], -1)
    if not np.isfinite(e).all():
        raise ValueError(f"errors hold {int((~np.isfinite(e)).sum())} NaN/Inf value(s)")
    bad = ~(np.isfinite(sigma) & (sigma > 0))
    if bad.any():
        raise ValueError(f"spreads must be finite and > 0; {int(bad.sum())} of {sigma.shape[0]} are not "
                         f"(first at index {int(np.argmax(bad))}: {sigma[np.argmax(bad)]}); leave out padded atoms "
                         "and samples where all members agree exactly")
    return e, sigma


def without_zero_spreads(errors, spreads, where: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(errors, spreads, count left out): the samples whose spread is exactly 0 left out of (M,)/(M, d) ``errors``
    and (M,) ``spreads``.

    A spread of exactly 0 means the members agree exactly: the forces of an isolated atom (0 for every
    member: an element's reference frame, common in training sets), or a component fixed by symmetry. Such a
    sample says nothing about the scale when its error is 0 too (the Gaussian of the module docstring has
    variance s²·0 and the sample 0/0 in the likelihood), and no finite scale can explain it when its error
    is not: :func:`fit_calibration_scale` refuses it, so one isolated atom among thousands made a whole
    calibration fail. Those with an error > 0 are named in a warning (:class:`PhysNetInputWarning`, ``where``
    says what is calibrated) with the largest such error.
    """
    e = np.asarray(errors, np.float64)
    sigma = np.asarray(spreads, np.float64)
    zero = sigma == 0.0
    if sigma.ndim != 1 or e.shape[:1] != sigma.shape or not zero.any():
        return e, sigma, 0
    magnitudes = np.abs(e[zero]) if e.ndim == 1 else np.linalg.norm(e[zero].reshape(int(zero.sum()), -1), axis=1)
    unexplained = magnitudes > 0
    if unexplained.any():
        warn_caller(f"{where}: {int(unexplained.sum())} of the {int(zero.sum())} sample(s) on which the members agree "
                    f"exactly (spread 0) have an error (up to {float(magnitudes.max()):.3g}): no scale of the spread "
                    "describes them; they are left out of the calibration", PhysNetInputWarning)
    return e[~zero], sigma[~zero], int(zero.sum())


def fit_calibration_scale(errors, spreads) -> float:
    """Maximum-likelihood scale s of the spreads: s = sqrt((1/M) Σ_i |e_i|² / σ_i²) (module docstring).

    Args:
      errors: (M,) or (M, d) prediction − reference of M validation samples
        (e.g. per-frame energies (M,) eV, or per-atom force errors (M, 3) eV/Å of the real atoms).
      spreads: (M,) uncalibrated ensemble spreads σ_i in the same unit
        (``energy_std``, ``forces_std`` of a model with ``calibration_scale`` 1).

    Returns:
      s > 0, to store as :attr:`PhysNetEnsemble.calibration_scale`.

    Raises:
      ValueError: shapes that do not match, NaN/Inf, a spread ≤ 0, or all errors 0.
    """
    e, sigma = _errors_and_spreads(errors, spreads)
    scale = float(np.sqrt(np.mean(np.sum(e**2, axis=1) / sigma**2)))
    if scale == 0.0:
        raise ValueError("all errors are 0: no scale can be fitted (is the reference the model itself?)")
    return scale


def gaussian_nll(errors, spreads, scale: float = 1.0) -> float:
    """Mean negative log-likelihood per sample of the module docstring's model, for scale ``scale``.

    (1/M) Σ_i [ (d/2) log(2π s² σ_i² / d) + d |e_i|² / (2 s² σ_i²) ], dimensionless
    given consistent units; lower is better, minimal at :func:`fit_calibration_scale`.
    """
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, received {scale}")
    e, sigma = _errors_and_spreads(errors, spreads)
    d = e.shape[1]
    variance = scale**2 * sigma**2 / d
    return float(np.mean(0.5 * d * np.log(2 * np.pi * variance) + np.sum(e**2, axis=1) / (2 * variance)))


def average_ranks(values) -> np.ndarray:
    """Ranks 1..M of ``values`` (M,), tied values sharing the mean of the ranks they span."""
    x = np.asarray(values, np.float64)
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    first_of_group = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    group = np.cumsum(first_of_group) - 1
    starts = np.flatnonzero(first_of_group)
    ends = np.append(starts[1:], x.shape[0])
    ranks = np.empty(x.shape[0])
    ranks[order] = ((starts + 1 + ends) / 2.0)[group]
    return ranks


def spearman_rank_correlation(spreads, errors) -> float:
    """Spearman's ρ between per-sample spreads and errors: the Pearson correlation of their average ranks.

    ρ = Σ_i (a_i − ā)(b_i − b̄) / sqrt(Σ_i (a_i − ā)² Σ_i (b_i − b̄)²) with a, b the
    ranks of ``spreads`` and ``errors`` (ties get the mean of their ranks), in
    [−1, 1]; pass error magnitudes (|e|, or a per-frame force RMSE) to ask "are the
    uncertain frames the bad ones?".

    Args:
      spreads, errors: (M,) finite values, M ≥ 2.

    Raises:
      ValueError: different lengths, fewer than 2 samples, NaN/Inf, or a sequence
        whose values are all equal (ρ is undefined).
    """
    a = np.asarray(spreads, np.float64)
    b = np.asarray(errors, np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.shape[0] < 2:
        raise ValueError(f"spreads and errors must be 1-d of equal length >= 2, received shapes {a.shape}, {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("spreads and errors must be finite")
    ra, rb = average_ranks(a) - (a.shape[0] + 1) / 2.0, average_ranks(b) - (a.shape[0] + 1) / 2.0
    norm = np.sqrt(np.sum(ra**2) * np.sum(rb**2))
    if norm == 0.0:
        which = "spreads" if np.all(a == a[0]) else "errors"
        raise ValueError(f"all {which} are equal: the rank correlation is undefined")
    return float(np.sum(ra * rb) / norm)
