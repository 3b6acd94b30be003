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

Two geometries are compared together: the given one R and R + δ, every atom moved by
δ = ``CheckSettings.displacement`` (0.05 Å) in a random direction (seed
``CheckSettings.seed + 2``). Reference geometries are often minima, where every force
is round-off (~1e-6 eV/Å) and a slope between two such noise fields means nothing;
at R + δ the forces are those of the surface's curvature (a few eV/Å).

A slope or weight is judged only where it is *resolved*: where being off by
``Thresholds.fd_ratio`` would move the forces by more than the error the check
tolerates anyway (the warn bound of ``fd_relative``), i.e. where

    fd_ratio · size > warn · max(1, max|F_FD|),

size being max|F_FD| for a slope and, for a weight, the largest component of
F_FD,t not explained by the other terms (the residual of its least-squares fit on
them: terms that cancel each other, as at a symmetric minimum, leave their weights
undetermined). Below that the absolute error alone is judged, and the message says so.

A model whose forces are all zero at both geometries (max |F| and max |F_FD| ≤
``FORCE_FLOOR``: its energy does not depend on the geometry, an untrained or broken
model) gets a warning: every comparison holds trivially and says nothing about it.
It is a warning, not a failure, because nothing measured is wrong (zero is the exact
gradient of a constant), but a pass would vouch for a model the check could not test.
"""

from __future__ import annotations

import numpy as np

from physnetjax.check.evaluate import TERMS, Evaluator
from physnetjax.check.report import CheckResult
from physnetjax.check.settings import CheckSettings, Thresholds
from physnetjax.check.stability import random_displacements

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
    total force is fully explained by the terms) and ``independent_force``: per term,
    max |F_FD,t − its least-squares fit on the other active terms| (eV/Å; None when
    inactive), the part of the term's force that fixes its weight.
    """
    active = [k for k in range(len(TERMS)) if np.max(np.abs(term_numerical[k])) > FORCE_FLOOR]
    weights = {t: None for t in TERMS}
    independent = {t: None for t in TERMS}
    residual = None
    if active:
        design = np.stack([term_numerical[k].ravel() for k in active], axis=1)
        target = total_analytic.ravel()
        solution, *_ = np.linalg.lstsq(design, target, rcond=None)
        for m, (k, w) in enumerate(zip(active, solution)):
            weights[TERMS[k]] = float(w)
            others = np.delete(design, m, axis=1)
            column = design[:, m]
            if others.shape[1]:
                column = column - others @ np.linalg.lstsq(others, column, rcond=None)[0]
            independent[TERMS[k]] = float(np.max(np.abs(column)))
        residual = float(np.linalg.norm(target - design @ solution) / max(np.linalg.norm(target), FORCE_FLOOR))
    return {"weights": weights, "fit_relative_residual": residual, "independent_force": independent}


def resolved(size: float, scale: float, thresholds: Thresholds) -> bool:
    """Whether a slope or weight of a force field of max component ``size`` (eV/Å) is judged.

    True where a slope off by ``fd_ratio`` changes the forces by more than the warn bound
    of the error, ``fd_relative[0] · max(1, scale)``, ``scale`` being the max|F_FD| that
    normalises the relative error (see the module docstring).
    """
    return size * thresholds.fd_ratio > thresholds.fd_relative[0] * max(1.0, scale)


def displaced_positions(positions: np.ndarray, settings: CheckSettings) -> np.ndarray:
    """``positions`` with every atom moved by ``settings.displacement`` Å in a random direction."""
    rng = np.random.default_rng(settings.seed + 2)
    return positions + random_displacements(rng, 1, positions.shape[0], settings.displacement)[0]


def _ratio_failure(metrics: dict, limit: float) -> str | None:
    ratio = metrics["ratio"]
    if ratio is None or abs(ratio - 1.0) <= limit:
        return None
    if ratio < 0:
        return f"sign flipped (analytic/numerical = {_fmt_ratio(ratio)})"
    return f"analytic/numerical = {_fmt_ratio(ratio)}"


def check_forces(evaluator: Evaluator, index: int, settings: CheckSettings, thresholds: Thresholds) -> list:
    """Results ``forces.fd.total`` and ``forces.fd.<term>`` for each term that exerts a force.

    Compared at R and at R + δ together (module docstring): the metrics are over the
    2n atoms of both. details: the :func:`compare_forces` metrics, ``ratio_judged``,
    ``per_geometry`` (max error and max|F_FD| at R, then at R + δ), ``displacement_A``;
    the total also has ``term_weights``, ``weights_judged``, ``independent_force``,
    ``fit_relative_residual`` and ``zero_forces``; a term has ``weight_in_total``.
    """
    given = np.asarray(evaluator.structure.positions, np.float64)
    geometries = [given, displaced_positions(given, settings)]
    numeric = np.concatenate([numerical_forces(evaluator, g, settings.fd_step) for g in geometries], axis=1)
    forces = np.concatenate([evaluator.evaluate_one(g)[1] for g in geometries])
    analytic_terms = np.concatenate([evaluator.term_forces(g) for g in geometries], axis=1)
    n = given.shape[0]

    def per_geometry(analytic, numerical):
        return [{"max_abs_error": float(np.max(np.abs(analytic[part] - numerical[part]))),
                 "max_abs_numerical": float(np.max(np.abs(numerical[part])))}
                for part in (slice(0, n), slice(n, 2 * n))]

    where = f"at R and R + {settings.displacement:g} Å random moves"
    total = compare_forces(forces, numeric[0])
    scale = total["max_abs_numerical"]
    total["ratio_judged"] = total["ratio"] is not None and resolved(scale, scale, thresholds)
    attribution = term_weights(forces, numeric[1:])
    judged = {t: w is not None and resolved(attribution["independent_force"][t], scale, thresholds)
              for t, w in attribution["weights"].items()}
    zero = max(scale, float(np.max(np.abs(forces)))) <= FORCE_FLOOR
    total.update(term_weights=attribution["weights"], weights_judged=judged,
                 independent_force=attribution["independent_force"],
                 fit_relative_residual=attribution["fit_relative_residual"], zero_forces=zero,
                 per_geometry=per_geometry(forces, numeric[0]), displacement_A=settings.displacement)
    suspects = [f"{t} ×{_fmt_ratio(w)}" for t, w in attribution["weights"].items()
                if judged[t] and abs(w - 1.0) > thresholds.fd_ratio]
    message = (f"{where}: max err {total['max_abs_error']:.2e} eV/Å, rms {total['rms_error']:.2e}, "
               f"ratio {_fmt_ratio(total['ratio'])}")
    if total["ratio"] is not None and not total["ratio_judged"]:
        message += " " + _unresolved(scale, scale, thresholds)
    unjudged = [t for t, w in attribution["weights"].items() if w is not None and not judged[t]]
    if unjudged:
        message += (f"; weights of {', '.join(unjudged)} in the total not judged (their forces cancel or are too "
                    "small to fix them)")
    failure = _ratio_failure(total, thresholds.fd_ratio) if total["ratio_judged"] else None
    if suspects:
        failure = "; ".join(filter(None, [failure, "terms in the total force: " + ", ".join(suspects)]))
    warning = None
    if zero:
        warning = (f"every force is zero (max |F| ≤ {FORCE_FLOOR:g} eV/Å {where}): the energy does not depend "
                   "on the geometry, an untrained or broken model, and the force checks test nothing")
    results = [CheckResult.measured("forces.fd.total", GROUP, index, total["relative_error"], "relative",
                                    thresholds.fd_relative, message, total, failure, warning)]

    for k, term in enumerate(TERMS):
        if np.max(np.abs(numeric[k + 1])) <= FORCE_FLOOR and np.max(np.abs(analytic_terms[k])) <= FORCE_FLOOR:
            continue
        metrics = compare_forces(analytic_terms[k], numeric[k + 1])
        term_scale = metrics["max_abs_numerical"]
        metrics["ratio_judged"] = metrics["ratio"] is not None and resolved(term_scale, term_scale, thresholds)
        metrics["per_geometry"] = per_geometry(analytic_terms[k], numeric[k + 1])
        weight = attribution["weights"][term]
        metrics["weight_in_total"] = weight
        metrics["weight_judged"] = judged[term]
        failure = _ratio_failure(metrics, thresholds.fd_ratio) if metrics["ratio_judged"] else None
        if judged[term] and abs(weight - 1.0) > thresholds.fd_ratio:
            failure = "; ".join(filter(None, [failure, f"counted ×{_fmt_ratio(weight)} in the total force"]))
        message = f"{where}: max err {metrics['max_abs_error']:.2e} eV/Å, ratio {_fmt_ratio(metrics['ratio'])}"
        if metrics["ratio"] is not None and not metrics["ratio_judged"]:
            message += " " + _unresolved(term_scale, term_scale, thresholds)
        message += f", weight in total {_fmt_ratio(weight)}"
        if weight is not None and not judged[term]:
            message += " (not judged: not fixed by this term's own force)"
        results.append(CheckResult.measured(f"forces.fd.{term}", GROUP, index, metrics["relative_error"],
                                            "relative", thresholds.fd_relative, message, metrics, failure))
    return results


def _unresolved(size: float, scale: float, thresholds: Thresholds) -> str:
    """Why a slope is not judged (see :func:`resolved`)."""
    return (f"(not judged: max |F_FD| {size:.2g} eV/Å is too small for a ratio, a slope off by "
            f"{thresholds.fd_ratio:g} would change the forces by less than the tolerated error "
            f"{thresholds.fd_relative[0] * max(1.0, scale):g} eV/Å; the absolute error is judged)")


def _fmt_ratio(value) -> str:
    return "n/a" if value is None else f"{value:.6g}"
