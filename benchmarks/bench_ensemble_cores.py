"""Where the 2 CPU cores go: one model and K = 4 members on one core, on two, and split across them.

``bench_ensemble.py`` compares the shipped ensemble calls with one model on the same
two cores. This script asks what the ensemble targets (training ≤ 2.5×, batched
inference ≤ 2× one model) would need. Each configuration runs in its own worker
process (this script with ``--worker``), because the two things that decide how
XLA:CPU uses the cores are fixed when a process starts JAX: the CPU affinity (the
size of XLA's intra-op thread pool) and the number of host devices
(``--xla_force_host_platform_device_count``). Configurations:

* ``one, 2 cores`` / ``one, 1 core``: one PhysNet (the trainer's default model) with both
  cores, and pinned to core 0;
* ``K, 2 cores``: the shipped ensemble call (training: the vmapped step of
  :func:`physnetjax.train.ensemble.make_ensemble_steps`; inference: the members mapped,
  :class:`~physnetjax.ensemble.PhysNetEnsemble`);
* ``K, 1 core``: the same, pinned to core 0 (its work without any use of the second core);
* ``one + one, pinned processes``: two worker processes, pinned to core 0 and core 1,
  each running one model, started together: how much two executions at once slow each
  other down (against ``one, 1 core``; 1 would be no interference);
* ``K/2 + K/2, pinned processes``: two worker processes, pinned to core 0 and core 1,
  each running the shipped call for half of the members, started together; the time is
  the slower one's. Members on separate cores share nothing: the fastest arrangement of
  K independent members on two cores, and not one compiled program;
* ``K, 2 host devices``: one process with two XLA host devices, the members split
  between them by ``jax.shard_map`` (each device runs the shipped call for its half);
* ``K, 2 threads``: one process, two Python threads each calling the shipped, compiled
  call for half of the members at the same time.

Training: 16 optimiser steps (the trainer's default batch, 8 ethanol molecules, each
member its own batches), blocked at the end. Inference: energy and forces of 16
ethanol molecules. Each worker times ``repeats`` calls after warm-up (median wall time);
``rounds`` rounds run every configuration once, in turn, so load drift hits all alike.

Usage: python benchmarks/bench_ensemble_cores.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

PLAN = {"full": (3, 20), "quick": (1, 10), "smoke": (1, 2)}  # mode: (rounds, timed calls per worker)
MEMBERS = 4
MOLECULES = 16
STEPS = 16
START_DELAY_S = {"full": 40.0, "quick": 40.0, "smoke": 20.0}
"""Seconds from launching a pinned pair to its common start: both workers compile before it."""

CONFIGS = {  # name: (members in the worker, affinity or None, host devices, threads)
    "one, 2 cores": (1, None, 1, 1),
    "one, 1 core": (1, {0}, 1, 1),
    "K, 2 cores": (MEMBERS, None, 1, 1),
    "K, 1 core": (MEMBERS, {0}, 1, 1),
    "one + one, pinned processes": (1, "pair", 1, 1),
    "K/2 + K/2, pinned processes": (MEMBERS // 2, "pair", 1, 1),
    "K, 2 host devices": (MEMBERS, None, 2, 1),
    "K, 2 threads": (MEMBERS, None, 1, 2),
}


def worker(task: str, members: int, devices: int, threads: int, start: float, repeats: int, smoke: bool) -> dict:
    """Time the shipped call for ``members`` members in this process; returns {"wall_s": [...], "late_s": ...}."""
    import threading

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, PartitionSpec

    from physnetjax import compilation
    from physnetjax.data import bundled_dataset_path, fit_element_energies, load_dataset, shifted_energies
    from physnetjax.ensemble import PhysNetEnsemble, stack_members
    from physnetjax.neighbors import apply_batch, batch_molecules, model_pair_cutoff
    from physnetjax.predict import init_params
    from physnetjax.train.batching import batch_shapes
    from physnetjax.train.config import TrainConfig
    from physnetjax.train.ensemble import ensemble_step_functions, make_ensemble_steps, member_batches, member_seeds
    from physnetjax.train.loop import build_model
    from physnetjax.train.loss import loss_weights
    from physnetjax.train.optim import init_state, make_optimizer, make_schedule, make_steps

    config = TrainConfig(features=8, num_iterations=1) if smoke else TrainConfig()
    data = load_dataset([bundled_dataset_path()])
    model = build_model(config, int(data.Z.max()))
    seeds = member_seeds(0, members)
    params = init_params(model, seeds[0]) if members == 1 else stack_members([init_params(model, s) for s in seeds])
    groups = devices * threads  # how many parts the members are split into
    if task == "training":
        optimizer = make_optimizer(config, make_schedule(config, 100))
        e0 = fit_element_energies(data.Z, data.E, model.max_atomic_number, mask=data.has_E)
        energies = shifted_energies(data.Z, data.E, e0)
        shapes = batch_shapes(data, model, config.batch_size)
        frames = [np.arange(STEPS * config.batch_size)] * members
        batches = list(member_batches(data, frames, seeds, 0, energies, model, config.batch_size, shapes))
        args = (model, optimizer, loss_weights(config), config.loss, config.ema_decay)
        scale = jnp.ones((), jnp.float32)
        if members == 1:
            step = make_steps(*args)[0]
            batches = [jax.tree_util.tree_map(lambda x: x[0], b) for b in batches]
            states = [init_state(params, optimizer)]
        else:
            step = make_ensemble_steps(*args)[0]
            states = [jax.vmap(lambda p: init_state(p, optimizer))(params)]
        parts = [batches]
    else:
        frames = range(MOLECULES)
        batch = batch_molecules([data.Z[k, : data.N[k]] for k in frames], [data.R[k, : data.N[k]] for k in frames],
                                model.cutoff, pair_cutoff=model_pair_cutoff(model), dtype=np.float32)
        if members == 1:
            states = [params]
            step = compilation.jit(lambda p: apply_batch(model, p, batch)["forces"])
        else:
            ensemble = PhysNetEnsemble(member=model, size=members // groups)
            states = [params]
            step = compilation.jit(lambda p: apply_batch(ensemble, p, batch)["forces"])
    if devices > 1:
        mesh = Mesh(np.asarray(jax.devices()[:devices]), ("members",))
        spec = PartitionSpec("members")
        if task == "training":  # the trainer's ensemble step, split by shard_map
            step = compilation.jit(jax.shard_map(ensemble_step_functions(*args)[0], mesh=mesh,
                                                 in_specs=(spec, spec, spec, PartitionSpec()),
                                                 out_specs=(spec, spec, spec), check_vma=False), donate_argnums=0)
        else:
            member_call = lambda p: apply_batch(ensemble, p, batch)["forces"]  # noqa: E731
            step = compilation.jit(jax.shard_map(member_call, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False))
    elif threads > 1:
        half = members // threads
        states = [jax.tree_util.tree_map(lambda x, k=k: x[k * half:(k + 1) * half], states[0]) for k in range(threads)]
        if task == "training":
            parts = [[jax.tree_util.tree_map(lambda x, k=k: x[k * half:(k + 1) * half], b) for b in batches]
                     for k in range(threads)]

    def run_part(k: int) -> None:
        if task == "training":
            for batch_k, labels_k in parts[k]:
                states[k], loss, _ = step(states[k], batch_k, labels_k, scale)
            jax.block_until_ready(loss)
        else:
            jax.block_until_ready(step(states[k]))

    def run() -> None:
        if len(states) == 1:
            run_part(0)
            return
        pool = [threading.Thread(target=run_part, args=(k,)) for k in range(len(states))]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()

    for _ in range(3):
        run()
    late = time.time() - start
    while time.time() < start:
        time.sleep(0.001)
    walls = []
    for _ in range(repeats):
        begin = time.perf_counter()
        run()
        walls.append(time.perf_counter() - begin)
    return {"wall_s": walls, "late_s": max(late, 0.0)}


def launch(task: str, name: str, repeats: int, mode: str) -> dict:
    """Run configuration ``name`` in worker process(es); returns its wall times (the slower worker's for a pair)."""
    members, affinity, devices, threads = CONFIGS[name]
    start = time.time() + (START_DELAY_S[mode] if affinity == "pair" else 0.0)
    cores = [{0}, {1}] if affinity == "pair" else [affinity]
    procs = []
    for core in cores:
        env = dict(os.environ)
        if devices > 1:
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
        command = [sys.executable, __file__, "--worker", json.dumps(
            {"task": task, "members": members, "devices": devices, "threads": threads, "start": start,
             "repeats": repeats, "smoke": mode == "smoke", "cores": sorted(core) if core else None})]
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"worker for {name!r} ({task}) failed with exit code {proc.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    if affinity == "pair" and max(r["late_s"] for r in results) > 0:
        print(f"warning: a {name!r} worker was still compiling at the common start; raise START_DELAY_S", flush=True)
    return {"wall_s": [max(ws) for ws in zip(*(r["wall_s"] for r in results))]}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        spec = json.loads(sys.argv[2])
        if spec["cores"] is not None:
            os.sched_setaffinity(0, set(spec["cores"]))  # before JAX starts: sizes XLA's thread pool
        result = worker(spec["task"], spec["members"], spec["devices"], spec["threads"], spec["start"],
                        spec["repeats"], spec["smoke"])
        print(json.dumps(result))
        return

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import parse_args, publish, table

    args = parse_args(__doc__)
    rounds, repeats = PLAN[args.mode]
    walls = {task: {name: [] for name in CONFIGS} for task in ("training", "inference")}
    for round_ in range(rounds):
        for task in walls:
            for name in CONFIGS:
                walls[task][name] += launch(task, name, repeats, args.mode)["wall_s"]
                print(f"round {round_ + 1}/{rounds} {task}: {name} done", flush=True)
    medians = {task: {name: statistics.median(w) for name, w in times.items()} for task, times in walls.items()}
    rows = []
    for task, scale, work in (("training", 1e3, f"{STEPS} training steps"),
                              ("inference", 1e3, f"energy+forces, {MOLECULES} molecules")):
        one = medians[task]["one, 2 cores"]
        rows += [[work, name, medians[task][name] * scale, medians[task][name] / one] for name in CONFIGS]
    tables = [table(f"K = {MEMBERS} members and one model on one core, two cores, and split across them",
                    f"median wall time over {rounds} rounds × {repeats} calls, worker processes; times in ms",
                    ["work", "configuration", "wall (ms)", "× one, 2 cores"], rows)]
    publish("bench_ensemble_cores", args, tables,
            {"members": MEMBERS, "molecules": MOLECULES, "steps": STEPS, "wall_s": walls, "median_s": medians,
             "targets": {"train_ratio": 2.5, "inference_ratio": 2.0}})


if __name__ == "__main__":
    main()
