"""The jitted training step alone, compiled with and without XLA:CPU's YNNPACK fusions (issue 18, item 2).

One :class:`physnetjax.train.loop.Trainer` with the default ``python -m physnetjax.train``
settings (features 32, max_degree 1, 2 iterations, batch 8 since the defaults study, float32) on each data set
(ethanol of ../shared/data; aspirin with ``--aspirin PATH``); its device train step
(batch gathered on the device, energy and forces by autodiff, parameter gradient
through them, AMSGrad and EMA update) is compiled twice from the same un-jitted
function: plain ``jax.jit`` (XLA's defaults) and :func:`physnetjax.compilation.jit`
(YNNPACK fusions off). Both start from the same state and run the same epoch of steps,
alternately (``repeats`` rounds), so they see the same machine load; reported per step:
median wall time and process CPU time (all threads; steadier than wall time when other
jobs share the cores). Compilation is excluded (two warm-up steps per variant); the first
step of each variant, compile included, is recorded as ``first_step_s``.

``--emitters-off`` adds a third variant: the library's options plus
``xla_cpu_use_fusion_emitters=false`` (XLA's older loop emitters for its fusions; the
setting the test suite compiles with, ``tests/conftest.py``): whether the library should
compile with it too.

Writes ``bench_train_step.json``.

Usage: python benchmarks/bench_train_step.py [--quick | --smoke] [--out DIR] [--aspirin PATH] [--emitters-off]
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from common import SHARED_DATA, compiled_with, interleaved_times, parse_args, publish, table
from physnetjax.compilation import compiler_options
from physnetjax.train import TrainConfig
from physnetjax.train.device_steps import make_device_steps
from physnetjax.train.loop import Trainer
from physnetjax.train.loss import loss_weights
from physnetjax.train.optim import step_functions

REPEATS = {"full": 5, "quick": 3, "smoke": 1}


EMITTERS_OFF = "YNNPACK fusions and fusion emitters off"


def compiled_steps(trainer: Trainer, config: TrainConfig, emitters_off: bool) -> dict:
    """{"XLA defaults": step, "YNNPACK fusions off": step[, EMITTERS_OFF: step]}: the trainer's device step
    compiled each way."""
    raw = step_functions(trainer.model, trainer.optimizer, loss_weights(config), config.loss, config.ema_decay)[:2]
    variants = [("XLA defaults", None), ("YNNPACK fusions off", compiler_options())]
    if emitters_off:
        variants.append((EMITTERS_OFF, {**compiler_options(), "xla_cpu_use_fusion_emitters": False}))
    steps = {}
    for name, options in variants:
        with compiled_with(options):
            steps[name] = make_device_steps(*raw, trainer.shapes, False)[0]
    return steps


def measure(data: Path, repeats: int, smoke: bool, emitters_off: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(data=[str(data)], out=out, progress=False, plots=False)
        trainer = Trainer(config, Path(out), resuming=False)
        inputs = list(trainer.training_inputs())[: 3 if smoke else None]
        scale = jnp.float32(1.0)
        start_state = jax.device_get(trainer.state)
        steps = compiled_steps(trainer, config, emitters_off)

        def run(step, count=None):
            state = jax.device_put(start_state)
            for frames, rows in inputs[:count]:
                state, loss, _ = step(state, frames, rows, scale)
            jax.block_until_ready(state)
            return float(loss)

        first_step_s = {}
        for name, step in steps.items():
            started = time.perf_counter()
            run(step, 1)
            first_step_s[name] = time.perf_counter() - started
        first_losses = {name: run(step, 2) for name, step in steps.items()}
        times = interleaved_times({name: lambda step=step: run(step) for name, step in steps.items()}, repeats,
                                  warmup=0)
        frames = trainer.device_frames
        return {"data": data.stem, "batch_size": config.batch_size, "shapes": trainer.shapes.__dict__,
                "steps": len(inputs),
                "atoms_per_frame": sorted({int(n) for n in np.asarray(frames.atom_counts)}),
                "edges_per_frame": [int(np.min(frames.edge_counts)), float(np.mean(frames.edge_counts)),
                                    int(np.max(frames.edge_counts))],
                "loss_after_2_steps": first_losses, "first_step_s": first_step_s, "load": os.getloadavg()[0],
                "wall_s": {name: [w / len(inputs) for w in t["wall_s"]] for name, t in times.items()},
                "cpu_s": {name: [c / len(inputs) for c in t["cpu_s"]] for name, t in times.items()}}


def main() -> None:
    def extra(parser):
        parser.add_argument("--aspirin", type=Path, default=None,
                            help="aspirin .npz (21 atoms) to measure beside ethanol")
        parser.add_argument("--emitters-off", action="store_true",
                            help="add the variant with XLA:CPU's fusion emitters off too (the test suite's setting)")

    args = parse_args(__doc__, extra)
    sets = [SHARED_DATA / "ethanol_gfn2_500K.npz"] + ([args.aspirin] if args.aspirin else [])
    results = [measure(data, REPEATS[args.mode], args.mode == "smoke", args.emitters_off) for data in sets]
    rows, emitter_rows = [], []
    for result in results:
        wall = {name: statistics.median(v) * 1e3 for name, v in result["wall_s"].items()}
        cpu = {name: statistics.median(v) * 1e3 for name, v in result["cpu_s"].items()}
        if args.emitters_off:
            first = result["first_step_s"]
            emitter_rows.append([result["data"], first["YNNPACK fusions off"], wall["YNNPACK fusions off"],
                                 cpu["YNNPACK fusions off"], first[EMITTERS_OFF], wall[EMITTERS_OFF], cpu[EMITTERS_OFF],
                                 wall[EMITTERS_OFF] / wall["YNNPACK fusions off"]])
        rows.append([result["data"], result["shapes"]["atoms"], result["shapes"]["edges"], result["load"],
                     wall["XLA defaults"], cpu["XLA defaults"], wall["YNNPACK fusions off"], cpu["YNNPACK fusions off"],
                     cpu["XLA defaults"] / cpu["YNNPACK fusions off"]])
    batch = results[0]["batch_size"]
    tables = [table(f"Default-model train step (batch {batch}, float32), XLA defaults vs YNNPACK fusions off",
                    "ms per step: median over rounds of an epoch of steps (compile excluded), wall and process CPU "
                    "time; both variants alternate; load = 1-min load average after the runs (2 cores, shared)",
                    ["data", "atom slots", "edge slots", "load", "defaults wall ms", "defaults CPU ms",
                     "off wall ms", "off CPU ms", "CPU ratio"], rows)]
    if args.emitters_off:
        tables.append(table("The library's step (YNNPACK fusions off) vs the same with XLA's fusion emitters off",
                            "first step: wall s of the first call, compile included; ms per step as above",
                            ["data", "library first step s", "library wall ms", "library CPU ms",
                             "emitters off first step s", "emitters off wall ms", "emitters off CPU ms",
                             "wall ratio (off / library)"], emitter_rows))
    publish("bench_train_step", args, tables, {"results": results})


if __name__ == "__main__":
    main()
