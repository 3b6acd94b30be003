"""Training throughput: samples/s of the jitted train step (steady state, compile excluded) and peak memory.

Usage::

    python benchmarks/bench_train.py                      # ethanol (bundled) + base pairs, batch 32
    python benchmarks/bench_train.py --basepairs ../shared/data/basepairs --steps 30 --out bench_train.json

For each dataset the default trainer model (features 32, max_degree 1, 2 iterations)
is built, one train step is compiled and timed separately, then ``--steps`` steps on
fixed-shape batches are timed (host-side batch building included, as in training).
Peak memory is the process's maximum resident set size (ru_maxrss) after the run, and
on accelerators the device's ``peak_bytes_in_use`` when reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.data import bundled_dataset_path, load_dataset, shifted_energies, fit_element_energies
from physnetjax.predict import init_params
from physnetjax.train.batching import batch_shapes, iterate_batches
from physnetjax.train.config import TrainConfig
from physnetjax.train.loop import build_model
from physnetjax.train.loss import loss_weights
from physnetjax.train.optim import init_state, make_optimizer, make_schedule, make_steps
from physnetjax.train.parallel import device_mesh, replicate, shard_batch


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
    start = time.perf_counter()
    for _ in range(steps):
        state, loss, _ = train_step(state, *next(stream), scale)
    loss.block_until_ready()
    seconds = time.perf_counter() - start
    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}
    return {
        "dataset": [str(p) for p in paths],
        "frames": len(data),
        "max_atoms": data.max_atoms,
        "batch_size": batch_size,
        "steps": steps,
        "compile_s": compile_s,
        "step_ms": 1e3 * seconds / steps,
        "samples_per_s": steps * batch_size / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device_peak_mb": stats.get("peak_bytes_in_use", 0) / 2**20 or None,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--basepairs", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "basepairs"),
                        help="folder with at_prod.npz and gc_prod.npz (skipped if absent)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="bench_train.json")
    args = parser.parse_args(argv)
    config = TrainConfig()
    sets = {"ethanol": [bundled_dataset_path()]}
    basepairs = [Path(args.basepairs) / name for name in ("at_prod.npz", "gc_prod.npz")]
    if all(p.exists() for p in basepairs):
        sets["basepairs_30atoms"] = basepairs
    results = {"device": str(jax.local_devices()[0]), "num_devices": jax.local_device_count(),
               "platform": platform.platform(), "jax": jax.__version__,
               "model": {k: getattr(config, k) for k in ("features", "max_degree", "num_iterations", "n_res",
                                                          "num_basis_functions", "cutoff")},
               "results": {}}
    for name, paths in sets.items():
        results["results"][name] = bench(paths, args.batch_size, args.steps, config)
        r = results["results"][name]
        print(f"{name}: {r['samples_per_s']:.1f} samples/s ({r['step_ms']:.1f} ms/step, batch {r['batch_size']}), "
              f"compile {r['compile_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB")
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
