"""Check 1: analytic forces against central finite differences, for the total and per term.

For every atom i and direction a (float64, step δ)::

    F_FD,ia = −(E(R + δ e_ia) − E(R − δ e_ia)) / (2δ)

for the total energy and for each term E_t (network, electrostatics, repulsion, dispersion).
Compared with the analytic forces (the function's ``forces`` for the total, the
autodiff −∂E_t/∂R for each term) by

* max and RMS of |F − F_FD| (eV/Å) and the relative error max|F − F_FD| / max(1, max|F_FD|);
* the least-squares slope s = ⟨F, F_FD⟩ / ⟨F_FD, F_FD⟩: 1 is right, 2 is "twice
  too large", −1 is "sign flipped";
* the weight of each term in the *total* analytic force: the least-squares fit
  F ≈ Σ_t w_t F_FD,t over the terms that exert a force. A term counted twice gets
  w_t = 2, a flipped one −1: this names the culprit when only the total is wrong.
"""

from __future__ import annotations

import numpy as np

from physnetjax.check.evaluate import TERMS, Evaluator
from physnetjax.check.report import CheckResult
from physnetjax.check.settings import CheckSettings, Thresholds

GROUP = "forces"
FORCE_FLOOR = 1e-6
"""eV/Å: below this a force field is "absent" (no slope or weight is computed)."""


def numerical_forces(evaluator: Evaluator, positions: np.ndarray, step: float) -> np.ndarray:
    """(1 + len(TERMS), n, 3) central-difference forces in eV/Å: the total, then each of TERMS."""
    n = positions.shape[0]
    displaced = np.repeat(positions[None], 6 * n, axis=0)
    for i in range(n):
        for a in range(3):
            displaced[6 * i + 2 * a, i, a] += step
            displaced[6 * i + 2 * a + 1, i, a] -= step
    energies = evaluator.energies(displaced)
    numeric = -(energies[0::2] - energies[1::2]) / (2.0 * step)
    return numeric.reshape(n, 3, -1).transpose(2, 0, 1)


def compare_forces(analytic: np.ndarray, numerical: np.ndarray) -> dict:
    """Error metrics of ``analytic`` against ``numerical`` forces, both (n, 3) eV/Å.

    Returns dict: ``max_abs_error``, ``rms_error`` (eV/Å), ``relative_error`` (max
    error / max(1, max|F_FD|)), ``max_abs_numerical`` (eV/Å), ``ratio`` (least-squares
    slope, None when max|F_FD| ≤ FORCE_FLOOR) and ``sign`` ("same", "flipped" or "none").
    """
    error = np.abs(analytic - numerical)
    scale = float(np.max(np.abs(numerical)))
    ratio = None
    if scale > FORCE_FLOOR:
        ratio = float(np.vdot(analytic, numerical) / np.vdot(numerical, numerical))
    return {
        "max_abs_error": float(error.max()),
        "rms_error": float(np.sqrt(np.mean(error**2))),
        "relative_error": float(error.max() / max(1.0, scale)),
        "max_abs_numerical": scale,
        "ratio": ratio,
        "sign": "none" if ratio is None else ("flipped" if ratio < 0 else "same"),
    }


def term_weights(total_analytic: np.ndarray, term_numerical: np.ndarray) -> dict:
    """Weights w_t of the fit F ≈ Σ_t w_t F_FD,t (terms with max|F_FD,t| > FORCE_FLOOR; others None).

    Also returns ``fit_relative_residual`` = |F − Σ w F_FD,t| / |F| (0 when the
    total force is fully explained by the terms).
    """
    active = [k for k in range(len(TERMS)) if np.max(np.abs(term_numerical[k])) > FORCE_FLOOR]
    weights = {t: None for t in TERMS}
    residual = None
    if active:
        design = np.stack([term_numerical[k].ravel() for k in active], axis=1)
        target = total_analytic.ravel()
        solution, *_ = np.linalg.lstsq(design, target, rcond=None)
        for k, w in zip(active, solution):
            weights[TERMS[k]] = float(w)
        residual = float(np.linalg.norm(target - design @ solution) / max(np.linalg.norm(target), FORCE_FLOOR))
    return {"weights": weights, "fit_relative_residual": residual}


def _ratio_failure(metrics: dict, limit: float) -> str | None:
    ratio = metrics["ratio"]
    if ratio is None or abs(ratio - 1.0) <= limit:
        return None
    if ratio < 0:
        return f"sign flipped (analytic/numerical = {_fmt_ratio(ratio)})"
    return f"analytic/numerical = {_fmt_ratio(ratio)}"


def check_forces(evaluator: Evaluator, index: int, settings: CheckSettings, thresholds: Thresholds) -> list:
    """Results ``forces.fd.total`` and ``forces.fd.<term>`` for each term that exerts a force.

    details: the :func:`compare_forces` metrics; the total also has ``term_weights``
    and ``fit_relative_residual``; a term has ``weight_in_total``.
    """
    positions = np.asarray(evaluator.structure.positions, np.float64)
    numeric = numerical_forces(evaluator, positions, settings.fd_step)
    _, forces = evaluator.evaluate_one(positions)
    total = compare_forces(forces, numeric[0])
    attribution = term_weights(forces, numeric[1:])
    total.update(term_weights=attribution["weights"], fit_relative_residual=attribution["fit_relative_residual"])
    suspects = [f"{t} ×{_fmt_ratio(w)}" for t, w in attribution["weights"].items()
                if w is not None and abs(w - 1.0) > thresholds.fd_ratio]
    message = (f"max err {total['max_abs_error']:.2e} eV/Å, rms {total['rms_error']:.2e}, "
               f"ratio {_fmt_ratio(total['ratio'])}")
    failure = _ratio_failure(total, thresholds.fd_ratio)
    if suspects:
        failure = "; ".join(filter(None, [failure, "terms in the total force: " + ", ".join(suspects)]))
    results = [CheckResult.measured("forces.fd.total", GROUP, index, total["relative_error"], "relative",
                                    thresholds.fd_relative, message, total, failure)]

    analytic_terms = evaluator.term_forces(positions)
    for k, term in enumerate(TERMS):
        if np.max(np.abs(numeric[k + 1])) <= FORCE_FLOOR and np.max(np.abs(analytic_terms[k])) <= FORCE_FLOOR:
            continue
        metrics = compare_forces(analytic_terms[k], numeric[k + 1])
        weight = attribution["weights"][term]
        metrics["weight_in_total"] = weight
        failure = _ratio_failure(metrics, thresholds.fd_ratio)
        if weight is not None and abs(weight - 1.0) > thresholds.fd_ratio:
            failure = "; ".join(filter(None, [failure, f"counted ×{_fmt_ratio(weight)} in the total force"]))
        message = (f"max err {metrics['max_abs_error']:.2e} eV/Å, ratio {_fmt_ratio(metrics['ratio'])}, "
                   f"weight in total {_fmt_ratio(weight)}")
        results.append(CheckResult.measured(f"forces.fd.{term}", GROUP, index, metrics["relative_error"],
                                            "relative", thresholds.fd_relative, message, metrics, failure))
    return results


def _fmt_ratio(value) -> str:
    return "n/a" if value is None else f"{value:.6g}"
