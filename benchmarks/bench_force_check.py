"""Cost of the trainer's float64 finite-difference force check, before and after the energies-only path.

The trainer checks −∂E/∂R against central differences of the energy at every best
checkpoint (:func:`physnetjax.train.forcecheck.finite_difference_force_error`): one
molecule, 6 n displaced geometries. Two ways of doing the same check are timed
**interleaved** on the first ethanol frame, with the same float64 parameters:

* ``batched (before)``: the analytic forces from a padded chunk of
  :meth:`~physnetjax.check.evaluate.Evaluator.evaluate` and the displaced energies
  from ``evaluate`` too (energies and forces of every geometry);
* ``energies only (now)``: :meth:`~physnetjax.check.evaluate.Evaluator.evaluate_one`
  for the analytic forces and :meth:`~physnetjax.check.evaluate.Evaluator.energies`
  (no force pass) for the displaced geometries, as the trainer now does.

Both run :func:`~physnetjax.train.forcecheck.finite_difference_force_error` itself (the
"before" one with an evaluator whose ``energies``/``evaluate_one`` fall back to
``evaluate``), so casting the parameters and building the evaluator are included.
Model: PhysNet of features 64 (the first ``--preset accurate``'s width) and 32 (the default)
sizes; ``--smoke``: features 8. Reported: median process CPU and wall time per check,
and the largest difference between the two results (they must agree).

Usage: python benchmarks/bench_force_check.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import jax
import numpy as np

from common import interleaved_times, parse_args, publish, table
import physnetjax.train.forcecheck as forcecheck
from physnetjax.check.evaluate import Evaluator
from physnetjax.data import bundled_dataset_path, load_dataset
from physnetjax.predict import init_params
from physnetjax.train.config import TrainConfig
from physnetjax.train.loop import build_model

PLAN = {"full": ((32, 64), 15), "quick": ((64,), 7), "smoke": ((8,), 2)}
DELTA = 1e-4


class BatchedEvaluator(Evaluator):
    """The evaluator as the check used it before: energies and analytic forces from chunked energy+force calls."""

    def energies(self, positions) -> np.ndarray:
        return self.evaluate(positions)[0]

    def evaluate_one(self, positions) -> tuple:
        energies, forces = self.evaluate(np.asarray(positions)[None])
        return energies[0], forces[0]


def trained_like(params, scale: float = 0.1):
    """``params`` + N(0, scale²) noise: a fresh model's zero-initialised output layer has no forces to check."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(0)
    return jax.tree_util.tree_unflatten(tree, [leaf + scale * rng.standard_normal(leaf.shape).astype(leaf.dtype)
                                               for leaf in leaves])


def check_with(evaluator_class, model, params, atomic_numbers, positions) -> float:
    """:func:`finite_difference_force_error` with ``evaluator_class`` as its evaluator."""
    original = forcecheck.Evaluator
    forcecheck.Evaluator = evaluator_class
    try:
        return forcecheck.finite_difference_force_error(model, params, atomic_numbers, positions, DELTA)
    finally:
        forcecheck.Evaluator = original


def main() -> None:
    args = parse_args(__doc__)
    widths, rounds = PLAN[args.mode]
    data = load_dataset([bundled_dataset_path()])
    z, r = data.Z[0, : data.N[0]], data.R[0, : data.N[0]]
    rows, results = [], {}
    for features in widths:
        model = build_model(TrainConfig(features=features, num_iterations=1 if args.mode == "smoke" else 2),
                            int(data.Z.max()))
        params = trained_like(init_params(model, 0))
        errors = {}
        calls = {"batched (before)": lambda: errors.__setitem__(
                     "before", check_with(BatchedEvaluator, model, params, z, r)),
                 "energies only (now)": lambda: errors.__setitem__("now", check_with(Evaluator, model, params, z, r))}
        times = interleaved_times(calls, rounds)
        medians = {name: {key: float(np.median(t[key])) for key in ("cpu_s", "wall_s")} for name, t in times.items()}
        before = medians["batched (before)"]
        results[features] = {"times": medians, "max_abs_error_before": errors["before"],
                             "max_abs_error_now": errors["now"]}
        for name, t in medians.items():
            rows.append([features, name, t["cpu_s"] * 1e3, t["wall_s"] * 1e3, t["cpu_s"] / before["cpu_s"],
                         t["wall_s"] / before["wall_s"], errors["before" if name.startswith("batched") else "now"]])
    spec = table(f"Finite-difference force check of one ethanol frame ({len(z)} atoms, {6 * len(z)} displacements)",
                 f"interleaved, median over {rounds} checks; times in ms",
                 ["features", "variant", "CPU time", "wall", "CPU × before", "wall × before", "max |F - F_FD| eV/Å"],
                 rows)
    publish("bench_force_check", args, [spec], {"delta_A": DELTA, "results": {str(k): v for k, v in results.items()}})


if __name__ == "__main__":
    main()
