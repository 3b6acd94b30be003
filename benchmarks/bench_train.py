"""Training throughput: time of one jitted train step vs batch size (steady state, compile excluded).

For the bundled ethanol set and the A–T + G–C base pairs (../shared/data/basepairs,
skipped if absent) the default trainer model (features 32, max_degree 1, 2 iterations;
``--smoke``: features 8, 1 iteration) is built and, per batch size, one train step is
compiled and timed separately (``compile_s``), three more steps warm up, then each of
``steps`` steps on fixed-shape batches is timed, blocked until its loss is ready, with
host-side batch building included as in training. Reported: median (min–max) step time
and samples/s = batch / median. Peak memory is the process's maximum resident set size
(ru_maxrss, cumulative over the run) and on accelerators the device's
``peak_bytes_in_use``. Writes ``bench_train.json`` and ``train_scaling.png``.

Usage: python benchmarks/bench_train.py [--quick | --smoke] [--out DIR] [--basepairs DIR]
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from common import SHARED_DATA, ms, parse_args, summarise, table, publish
from physnetjax.data import bundled_dataset_path, load_dataset, shifted_energies, fit_element_energies
from physnetjax.predict import init_params
from physnetjax.train.batching import batch_shapes, iterate_batches
from physnetjax.train.config import TrainConfig
from physnetjax.train.loop import build_model
from physnetjax.train.loss import loss_weights
from physnetjax.train.optim import init_state, make_optimizer, make_schedule, make_steps
from physnetjax.train.parallel import device_mesh, replicate, shard_batch


PLAN = {  # mode: (ethanol batch sizes, base-pair batch sizes, timed steps)
    "full": ([1, 4, 16, 32, 64, 128], [8, 32], 20),
    "quick": ([8, 32], [32], 8),
    "smoke": ([4], [], 2),
}


def bench(paths, batch_size: int, steps: int, config: TrainConfig) -> dict:
    data = load_dataset(paths)
    model = build_model(config, int(data.Z.max()))
    e0 = fit_element_energies(data.Z, data.E, model.max_atomic_number, mask=data.has_E)
    energies = shifted_energies(data.Z, data.E, e0)
    mesh = device_mesh()
    shapes = batch_shapes(data, model, batch_size, mesh.devices.size)
    optimizer = make_optimizer(config, make_schedule(config, 100))
    train_step = make_steps(model, optimizer, loss_weights(config), config.loss, config.ema_decay)[0]
    state = replicate(init_state(init_params(model, 0), optimizer), mesh)
    scale = jnp.ones((), jnp.float32)
    rng = np.random.default_rng(0)

    def batches():
        while True:
            order = rng.permutation(len(data))
            for batch, labels in iterate_batches(data, order[: (len(order) // batch_size) * batch_size], energies,
                                                 model, batch_size, shapes):
                yield shard_batch(batch, mesh), shard_batch(labels, mesh)

    stream = batches()
    batch, labels = next(stream)
    start = time.perf_counter()
    state, loss, _ = train_step(state, batch, labels, scale)
    loss.block_until_ready()
    compile_s = time.perf_counter() - start
    for _ in range(3):
        state, loss, _ = train_step(state, *next(stream), scale)
    loss.block_until_ready()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, loss, _ = train_step(state, *next(stream), scale)
        loss.block_until_ready()
        times.append(time.perf_counter() - start)
    timing = summarise(times)
    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}
    return {
        "dataset": [str(p) for p in paths],
        "frames": len(data),
        "max_atoms": data.max_atoms,
        "batch_size": batch_size,
        "compile_s": compile_s,
        **timing,
        "samples_per_s": batch_size / timing["median_s"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device_peak_mb": stats.get("peak_bytes_in_use", 0) / 2**20 or None,
    }


def plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name in dict.fromkeys(r["name"] for r in rows):
        sel = [r for r in rows if r["name"] == name]
        median = np.array([r["median_s"] for r in sel]) * 1e3
        ax.errorbar([r["batch_size"] for r in sel], median,
                    yerr=[median - np.array([r["min_s"] for r in sel]) * 1e3,
                          np.array([r["max_s"] for r in sel]) * 1e3 - median], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size (molecules)")
    ax.set_ylabel("ms per train step")
    ax.set_title("Train step time (median, min–max)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    args = parse_args(__doc__, lambda p: p.add_argument(
        "--basepairs", type=Path, default=SHARED_DATA / "basepairs",
        help="folder with at_prod.npz and gc_prod.npz (skipped if absent)"))
    ethanol_sizes, basepair_sizes, steps = PLAN[args.mode]
    config = TrainConfig(features=8, num_iterations=1) if args.mode == "smoke" else TrainConfig()
    plan = [("ethanol", [bundled_dataset_path()], size) for size in ethanol_sizes]
    basepairs = [args.basepairs / name for name in ("at_prod.npz", "gc_prod.npz")]
    if all(p.exists() for p in basepairs):
        plan += [("basepairs_30atoms", basepairs, size) for size in basepair_sizes]
    rows = []
    for name, paths, batch_size in plan:
        rows.append({"name": name, **bench(paths, batch_size, steps, config)})
        print(f"{name} batch {batch_size}: done", flush=True)
    tables = [table("Training step vs batch size (float32)",
                    "one jitted train step incl. host batch building, blocked each step; compile excluded "
                    "(compile s = first step); median (min–max) over steps",
                    ["dataset", "batch", "ms/step (min–max)", "samples/s", "compile s", "peak RSS MB"],
                    [[r["name"], r["batch_size"], ms(r), r["samples_per_s"], r["compile_s"], r["peak_rss_mb"]]
                     for r in rows])]
    model = {k: getattr(config, k) for k in ("features", "max_degree", "num_iterations", "n_res",
                                              "num_basis_functions", "cutoff")}
    publish("bench_train", args, tables, {"model": model, "num_devices": jax.local_device_count(), "results": rows},
            plots={"train_scaling.png": lambda path: plot(rows, path)})


if __name__ == "__main__":
    main()
