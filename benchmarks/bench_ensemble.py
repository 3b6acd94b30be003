"""Ensemble cost: K = 4 members in one compiled call (mapped, vmapped, unrolled) vs one model, training and inference.

Four variants are timed **interleaved** (one, K mapped, K vmapped, K unrolled, one, ...), so a
change of the machine's load hits all of them alike, in process CPU time (both cores'
work; steadier than wall time on a shared machine) and wall time:

* ``one``: one PhysNet (:func:`physnetjax.train.optim.make_steps`, ``apply_batch`` of a PhysNet);
* ``K mapped``: the members run one after another inside one compiled program
  (:func:`physnetjax.ensemble.map_members`, a ``jax.lax.map``): what
  :class:`~physnetjax.ensemble.PhysNetEnsemble` ships for inference (and the trainer
  used for its step until the idle measurement of 2026-12-01 06:44 UTC);
* ``K vmapped``: the same single-model step/apply under ``jax.vmap`` over the member
  axis: what :func:`physnetjax.train.ensemble.make_ensemble_steps` ships for training;
* ``K unrolled``: the single-model step/apply written out K times in one program (a
  Python loop at trace time), which leaves XLA free to run independent members side by
  side on the 2 cores, for comparison;
* ``one, K x work``: one model on K times the molecules (training batch K × 8, inference
  K × the molecule count): the same model evaluations as the K members do, with one set of
  weights, i.e. what the members' work costs when nothing but the weights differs.

All calls are compiled as the library compiles them (:func:`physnetjax.compilation.jit`, YNNPACK
fusions off; the inference calls used plain ``jax.jit`` before 2026-12-02).

Training: the default trainer model (features 32, max_degree 1, 2 iterations;
``--smoke``: features 8, 1 iteration) on the bundled ethanol set, ``steps`` jitted
optimiser steps (the trainer's default batch, 8 molecules; AMSGrad; each member its own shuffled batch) per round,
blocked at the end; the batches are built before timing. Target: K = 4 ≤ 2.5× one model.

Inference: energy and forces of a batch of ethanol molecules (1 = the MD case, 16, 64)
by one jitted call, target K = 4 ≤ 2× one model. Beside the times, XLA's cost analysis
of each compiled call gives its floating-point operations (independent of the load);
not for the mapped call, whose loop body XLA counts once.

Usage: python benchmarks/bench_ensemble.py [--quick | --smoke] [--out DIR] [--members K]
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from common import interleaved_times, parse_args, publish, table
from physnetjax import compilation
from physnetjax.data import bundled_dataset_path, fit_element_energies, load_dataset, shifted_energies
from physnetjax.ensemble import PhysNetEnsemble, map_members, stack_members
from physnetjax.neighbors import apply_batch, batch_molecules, model_pair_cutoff
from physnetjax.predict import init_params
from physnetjax.train.batching import batch_shapes
from physnetjax.train.config import TrainConfig
from physnetjax.train.ensemble import make_ensemble_steps, member_batches, member_seeds
from physnetjax.train.loop import build_model
from physnetjax.train.loss import loss_weights
from physnetjax.train.optim import init_state, make_optimizer, make_schedule, make_steps, step_functions

PLAN = {  # mode: (training steps per round, inference molecule counts, rounds)
    "full": (16, (1, 16, 64), 15),
    "quick": (8, (1, 16), 7),
    "smoke": (1, (1, 2), 2),
}
BATCH_SIZE = TrainConfig().batch_size
VARIANTS = ("one", "one, K x work", "K mapped", "K vmapped", "K unrolled")


def unrolled(function, stacked, *shared):
    """``function(member_slice, *shared)`` for every member of the stacked pytree, written out K times, stacked."""
    size = jax.tree_util.tree_leaves(stacked)[0].shape[0]
    outs = [function(jax.tree_util.tree_map(lambda x: x[k], stacked), *shared) for k in range(size)]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)


def interleaved(calls: dict, rounds: int) -> dict:
    """Per variant: median and min process-CPU and wall seconds of :func:`common.interleaved_times`."""
    times = interleaved_times(calls, rounds)
    return {name: {"cpu_median_s": float(np.median(t["cpu_s"])), "cpu_min_s": float(np.min(t["cpu_s"])),
                   "wall_median_s": float(np.median(t["wall_s"])), "wall_min_s": float(np.min(t["wall_s"])),
                   "rounds": rounds} for name, t in times.items()}


def training_calls(data, energies, model, config, members: int, steps: int) -> tuple[dict, dict]:
    """(variant → call running ``steps`` optimiser steps, variant → XLA flops of one step)."""
    optimizer = make_optimizer(config, make_schedule(config, 100))
    weights = loss_weights(config)
    shapes = batch_shapes(data, model, BATCH_SIZE)
    seeds = member_seeds(0, members)
    train = np.arange(steps * BATCH_SIZE)
    stacked = list(member_batches(data, [train] * members, seeds, 0, energies, model, BATCH_SIZE, shapes))
    single = [jax.tree_util.tree_map(lambda x: x[0], batch) for batch in stacked]
    large_shapes = batch_shapes(data, model, members * BATCH_SIZE)
    large = [jax.tree_util.tree_map(lambda x: x[0], batch) for batch in member_batches(
        data, [np.arange(steps * members * BATCH_SIZE)], seeds[:1], 0, energies, model, members * BATCH_SIZE,
        large_shapes)]
    one_step = make_steps(model, optimizer, weights, config.loss, config.ema_decay)[0]
    single_step = step_functions(model, optimizer, weights, config.loss, config.ema_decay)[0]
    mapped_step = compilation.jit(lambda state, batch, labels, scale: map_members(
        lambda member: single_step(*member, scale), (state, batch, labels)), donate_argnums=0)
    vmapped_step = make_ensemble_steps(model, optimizer, weights, config.loss, config.ema_decay)[0]
    unrolled_step = compilation.jit(lambda state, batch, labels, scale: unrolled(
        lambda member, s: single_step(*member, s), (state, batch, labels), scale), donate_argnums=0)
    params = stack_members([init_params(model, s) for s in seeds])
    scale = jnp.ones((), jnp.float32)

    def members_state():  # own buffers per variant: the steps donate their state
        return jax.vmap(lambda p: init_state(p, optimizer))(jax.tree_util.tree_map(jnp.copy, params))

    plans = {"one": (one_step, init_state(init_params(model, seeds[0]), optimizer), single),
             "one, K x work": (one_step, init_state(init_params(model, seeds[0]), optimizer), large),
             "K mapped": (mapped_step, members_state(), stacked),
             "K vmapped": (vmapped_step, members_state(), stacked),
             "K unrolled": (unrolled_step, members_state(), stacked)}
    flops = {name: None if name == "K mapped" else compiled_flops(step, state, *batches[0], scale)
             for name, (step, state, batches) in plans.items()}

    def runner(step, state, batches):
        current = [state]  # the steps donate their input state: each call continues from the last one's

        def run():
            for batch, labels in batches:
                current[0], loss, _ = step(current[0], batch, labels, scale)
            jax.block_until_ready(loss)
        return run

    calls = {name: runner(*plan) for name, plan in plans.items()}
    return calls, flops


def inference_calls(data, model, members: int, molecules: int) -> tuple[dict, dict]:
    """(variant → energy+forces call on ``molecules`` ethanol frames, variant → XLA flops of that call)."""
    def ethanol_batch(count):
        return batch_molecules([data.Z[k, : data.N[k]] for k in range(count)],
                               [data.R[k, : data.N[k]] for k in range(count)], model.cutoff,
                               pair_cutoff=model_pair_cutoff(model), dtype=np.float32)

    batch, large = ethanol_batch(molecules), ethanol_batch(members * molecules)
    ensemble = PhysNetEnsemble(member=model, size=members)
    params = stack_members([init_params(model, s) for s in member_seeds(0, members)])
    one = compilation.jit(lambda p, b: apply_batch(model, p, b)["forces"])

    def vmapped(p, b):
        return jax.vmap(lambda member: apply_batch(model, member, b)["forces"])(p)

    plans = {"one": (one, init_params(model, 0), batch),
             "one, K x work": (one, init_params(model, 0), large),
             "K mapped": (compilation.jit(lambda p, b: apply_batch(ensemble, p, b)["forces"]), params, batch),
             "K vmapped": (compilation.jit(lambda p, b: jnp.mean(vmapped(p, b), axis=0)), params, batch),
             "K unrolled": (compilation.jit(lambda p, b: jnp.mean(unrolled(
                 lambda member: apply_batch(model, member, b)["forces"], p), axis=0)), params, batch)}
    calls = {name: (lambda f=f, p=p, b=b: jax.block_until_ready(f(p, b))) for name, (f, p, b) in plans.items()}
    return calls, {name: None if name == "K mapped" else compiled_flops(f, p, b) for name, (f, p, b) in plans.items()}


def compiled_flops(function, *args) -> float | None:
    """Floating-point operations of one call of the jitted ``function`` (XLA cost analysis; None if unavailable)."""
    cost = function.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return None if not cost or "flops" not in cost else float(cost["flops"])


def rows_of(label, times: dict, flops: dict, scale: float, unit: str) -> list:
    """Table rows (one per variant): times in ``unit``, cores busy (CPU / wall), ratios to ``one`` in CPU and
    wall time, flops ratio."""
    one = times["one"]
    return [[label, name, times[name]["cpu_median_s"] * scale, times[name]["wall_median_s"] * scale,
             times[name]["cpu_median_s"] / times[name]["wall_median_s"],
             times[name]["cpu_median_s"] / one["cpu_median_s"], times[name]["wall_median_s"] / one["wall_median_s"],
             None if flops[name] is None or flops["one"] is None else flops[name] / flops["one"]]
            for name in VARIANTS]


def main() -> None:
    args = parse_args(__doc__, lambda p: p.add_argument("--members", type=int, default=4, help="ensemble size K"))
    steps, molecule_counts, rounds = PLAN[args.mode]
    config = TrainConfig(features=8, num_iterations=1) if args.mode == "smoke" else TrainConfig()
    data = load_dataset([bundled_dataset_path()])
    model = build_model(config, int(data.Z.max()))
    e0 = fit_element_energies(data.Z, data.E, model.max_atomic_number, mask=data.has_E)
    energies = shifted_energies(data.Z, data.E, e0)

    calls, flops = training_calls(data, energies, model, config, args.members, steps)
    training = {"times": interleaved(calls, rounds), "flops": flops, "steps": steps}
    print("training: done", flush=True)
    inference = {}
    for molecules in molecule_counts:
        calls, flops = inference_calls(data, model, args.members, molecules)
        inference[molecules] = {"times": interleaved(calls, rounds * 3), "flops": flops}
    print("inference: done", flush=True)
    columns = ["work", "variant", "CPU time", "wall", "cores busy", "CPU × one", "wall × one", "flops × one"]
    tables = [
        table(f"Ensemble training, K = {args.members}: {steps} optimiser steps (batch {BATCH_SIZE}, ethanol)",
              f"interleaved rounds, median over {rounds}; CPU time = process CPU seconds; times in s",
              columns, rows_of(f"{steps} steps", training["times"], training["flops"], 1.0, "s")),
        table(f"Ensemble inference, K = {args.members}: energy + forces, one jitted call",
              f"interleaved calls, median over {rounds * 3}; times in ms",
              columns, [row for n, r in inference.items()
                        for row in rows_of(f"{n} molecule(s)", r["times"], r["flops"], 1e3, "ms")]),
    ]
    model_settings = {k: getattr(config, k) for k in ("features", "max_degree", "num_iterations", "n_res",
                                                       "num_basis_functions", "cutoff")}
    publish("bench_ensemble", args, tables,
            {"model": model_settings, "members": args.members, "training": training,
             "inference": {str(n): r for n, r in inference.items()},
             "targets": {"train_ratio": 2.5, "inference_ratio": 2.0}})


if __name__ == "__main__":
    main()
