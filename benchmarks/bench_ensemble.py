"""Ensemble cost: training K = 4 members as one vmapped step vs one model, and vmapped inference.

Training: on the bundled ethanol set with the default trainer model (features 32,
max_degree 1, 2 iterations; ``--smoke``: features 8, 1 iteration), one epoch over
``frames`` training frames (batch 16, AMSGrad) is timed for one model
(:func:`physnetjax.train.optim.make_steps`) and for K members
(:func:`physnetjax.train.ensemble.make_ensemble_steps`, each member with its own
shuffle, batches stacked (K, ...)), host-side batch building included as in
training. The first epoch compiles and is not timed; then ``epochs`` epochs are timed,
blocked at the end of each. Reported: median (min–max) seconds per epoch and the
ratio K-member / one-model (target ≤ 2.5 for K = 4).

Inference: energy and forces of a batch of ethanol molecules (1 = the MD case, and
16) by one jitted call: ``apply_batch`` of the PhysNet vs of the
:class:`~physnetjax.ensemble.PhysNetEnsemble` of K members (one ``jax.vmap`` over the
members, mean and spreads), timed with :func:`common.time_call` (target ≤ 2 for K = 4).
Beside each time, XLA's cost analysis of the compiled call gives its floating-point
operations (a figure that does not depend on the machine's load), and the count of the
call's top-level jaxpr equations that no parameter reaches (:func:`parameter_free_equations`:
work that ``jax.vmap`` over the members leaves unbatched, done once for all members).

Usage: python benchmarks/bench_ensemble.py [--quick | --smoke] [--out DIR] [--members K]
"""

from __future__ import annotations

import time

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

from common import ms, parse_args, publish, summarise, table, time_call
from physnetjax.data import bundled_dataset_path, fit_element_energies, load_dataset, shifted_energies
from physnetjax.ensemble import PhysNetEnsemble, stack_members
from physnetjax.neighbors import apply_batch, batch_molecules, model_pair_cutoff
from physnetjax.predict import init_params
from physnetjax.train.batching import batch_shapes, iterate_batches
from physnetjax.train.config import TrainConfig
from physnetjax.train.ensemble import make_ensemble_steps, member_batches, member_seeds
from physnetjax.train.loop import build_model
from physnetjax.train.loss import loss_weights
from physnetjax.train.optim import init_state, make_optimizer, make_schedule, make_steps

PLAN = {  # mode: (training frames per epoch, timed epochs, inference repeats)
    "full": (512, 3, 20),
    "quick": (128, 2, 7),
    "smoke": (16, 1, 2),
}
BATCH_SIZE = 16


def epoch_times(data, energies, model, config, members: int, frames: int, epochs: int) -> dict:
    """Seconds per training epoch (median of ``epochs`` after one compiling epoch) for ``members`` models."""
    shapes = batch_shapes(data, model, BATCH_SIZE)
    optimizer = make_optimizer(config, make_schedule(config, frames // BATCH_SIZE))
    weights = loss_weights(config)
    train = np.arange(frames)
    seeds = member_seeds(0, members)
    scale = jnp.ones((), jnp.float32)
    if members == 1:
        step = make_steps(model, optimizer, weights, config.loss, config.ema_decay)[0]
        state = init_state(init_params(model, 0), optimizer)

        def batches(epoch):
            return iterate_batches(data, train, energies, model, BATCH_SIZE, shapes, seed=[0, epoch])
    else:
        step = make_ensemble_steps(model, optimizer, weights, config.loss, config.ema_decay)[0]
        params = stack_members([init_params(model, s) for s in seeds])
        state = jax.vmap(lambda p: init_state(p, optimizer))(params)

        def batches(epoch):
            return member_batches(data, [train] * members, seeds, epoch, energies, model, BATCH_SIZE, shapes)

    compile_start = time.perf_counter()
    times = []
    for epoch in range(epochs + 1):
        start = time.perf_counter()
        for batch, labels in batches(epoch):
            state, loss, _ = step(state, batch, labels, scale)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - start)
    return {"members": members, "frames": frames, "first_epoch_s": times[0],
            "total_s": time.perf_counter() - compile_start, **summarise(times[1:])}


def inference_times(data, model, members: int, molecules: int, repeats: int) -> dict:
    """Seconds per jitted energy+forces call on ``molecules`` ethanol frames, one model or ``members`` vmapped."""
    batch = batch_molecules([data.Z[k, : data.N[k]] for k in range(molecules)],
                            [data.R[k, : data.N[k]] for k in range(molecules)], model.cutoff,
                            pair_cutoff=model_pair_cutoff(model), dtype=np.float32)
    if members == 1:
        runner, params = model, init_params(model, 0)
    else:
        runner = PhysNetEnsemble(member=model, size=members)
        params = stack_members([init_params(model, s) for s in member_seeds(0, members)])
    def function(p, b):
        return apply_batch(runner, p, b)

    call = jax.jit(function)
    timing = time_call(lambda: jax.block_until_ready(call(params, batch)["forces"]), repeats=repeats)
    free, equations = parameter_free_equations(function, params, batch)
    return {"members": members, "molecules": molecules, "flops": compiled_flops(call, params, batch),
            "parameter_free_equations": free, "equations": equations, **timing}


def parameter_free_equations(function, params, *args) -> tuple[int, int]:
    """(equations of ``function(params, *args)``'s top-level jaxpr that no parameter reaches, all equations).

    An equation depends on the parameters when one of its inputs is a parameter or the
    output of such an equation. Under ``jax.vmap`` over the members the parameter-free ones
    (geometry: distances, radial basis, neighbour gathers) carry no member axis and run
    once for all members, not K times.
    """
    closed = jax.make_jaxpr(function)(params, *args)
    tainted = set(closed.jaxpr.invars[: len(jax.tree_util.tree_leaves(params))])
    free = 0
    for equation in closed.jaxpr.eqns:
        if any(isinstance(v, jax.extend.core.Var) and v in tainted for v in equation.invars):
            tainted.update(equation.outvars)
        else:
            free += 1
    return free, len(closed.jaxpr.eqns)


def compiled_flops(function, *args) -> float | None:
    """Floating-point operations of one call of the jitted ``function`` (XLA cost analysis; None if unavailable)."""
    cost = function.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return None if not cost or "flops" not in cost else float(cost["flops"])


def main() -> None:
    args = parse_args(__doc__, lambda p: p.add_argument("--members", type=int, default=4, help="ensemble size K"))
    frames, epochs, repeats = PLAN[args.mode]
    config = TrainConfig(features=8, num_iterations=1) if args.mode == "smoke" else TrainConfig()
    data = load_dataset([bundled_dataset_path()])
    model = build_model(config, int(data.Z.max()))
    e0 = fit_element_energies(data.Z, data.E, model.max_atomic_number, mask=data.has_E)
    energies = shifted_energies(data.Z, data.E, e0)

    training = [epoch_times(data, energies, model, config, k, frames, epochs) for k in (1, args.members)]
    print("training: done", flush=True)
    inference = [inference_times(data, model, k, n, repeats) for n in (1, BATCH_SIZE) for k in (1, args.members)]
    print("inference: done", flush=True)
    train_ratio = training[1]["median_s"] / training[0]["median_s"]
    inference_ratios = {row["molecules"]: row["median_s"] / inference[2 * i]["median_s"]
                        for i, row in enumerate(inference[1::2])}
    tables = [
        table(f"Ensemble training: one epoch of {frames} ethanol frames, batch {BATCH_SIZE}",
              "whole epoch incl. host batch building, blocked at its end; compile epoch excluded; "
              "median (min–max) over epochs",
              ["members", "s/epoch (min–max)", "× one model", "first epoch s"],
              [[r["members"], f"{r['median_s']:.3g} ({r['min_s']:.3g}–{r['max_s']:.3g})",
                r["median_s"] / training[0]["median_s"], r["first_epoch_s"]] for r in training]),
        table("Ensemble inference: energy + forces, one jitted call",
              "apply_batch of PhysNet vs PhysNetEnsemble (one vmap over members); median (min–max)",
              ["molecules", "members", "ms/call (min–max)", "× one model", "flops", "flops × one model",
               "parameter-free eqns / all"],
              [[r["molecules"], r["members"], ms(r), r["median_s"] / inference[2 * (i // 2)]["median_s"], r["flops"],
                None if r["flops"] is None else r["flops"] / inference[2 * (i // 2)]["flops"],
                f"{r['parameter_free_equations']} / {r['equations']}"]
               for i, r in enumerate(inference)]),
    ]
    model_settings = {k: getattr(config, k) for k in ("features", "max_degree", "num_iterations", "n_res",
                                                       "num_basis_functions", "cutoff")}
    publish("bench_ensemble", args, tables,
            {"model": model_settings, "members": args.members, "training": training, "inference": inference,
             "train_epoch_ratio": train_ratio, "inference_ratio": inference_ratios,
             "targets": {"train_epoch_ratio": 2.5, "inference_ratio": 2.0}})


if __name__ == "__main__":
    main()
