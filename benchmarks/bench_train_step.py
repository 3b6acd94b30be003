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
jobs share the cores). Compilation is excluded (two warm-up steps per variant).

Writes ``bench_train_step.json``.

Usage: python benchmarks/bench_train_step.py [--quick | --smoke] [--out DIR] [--aspirin PATH]
"""

from __future__ import annotations

import os
import statistics
import tempfile
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


def compiled_steps(trainer: Trainer, config: TrainConfig) -> dict:
    """{"XLA defaults": step, "YNNPACK fusions off": step}: the trainer's device step compiled both ways."""
    raw = step_functions(trainer.model, trainer.optimizer, loss_weights(config), config.loss, config.ema_decay)[:2]
    steps = {}
    for name, options in (("XLA defaults", None), ("YNNPACK fusions off", compiler_options())):
        with compiled_with(options):
            steps[name] = make_device_steps(*raw, trainer.shapes, False)[0]
    return steps


def measure(data: Path, repeats: int, smoke: bool) -> dict:
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(data=[str(data)], out=out, progress=False, plots=False)
        trainer = Trainer(config, Path(out), resuming=False)
        inputs = list(trainer.training_inputs())[: 3 if smoke else None]
        scale = jnp.float32(1.0)
        start_state = jax.device_get(trainer.state)
        steps = compiled_steps(trainer, config)

        def run(step, count=None):
            state = jax.device_put(start_state)
            for frames, rows in inputs[:count]:
                state, loss, _ = step(state, frames, rows, scale)
            jax.block_until_ready(state)
            return float(loss)

        first_losses = {name: run(step, 2) for name, step in steps.items()}
        times = interleaved_times({name: lambda step=step: run(step) for name, step in steps.items()}, repeats,
                                  warmup=0)
        frames = trainer.device_frames
        return {"data": data.stem, "batch_size": config.batch_size, "shapes": trainer.shapes.__dict__,
                "steps": len(inputs),
                "atoms_per_frame": sorted({int(n) for n in np.asarray(frames.atom_counts)}),
                "edges_per_frame": [int(np.min(frames.edge_counts)), float(np.mean(frames.edge_counts)),
                                    int(np.max(frames.edge_counts))],
                "loss_after_2_steps": first_losses, "load": os.getloadavg()[0],
                "wall_s": {name: [w / len(inputs) for w in t["wall_s"]] for name, t in times.items()},
                "cpu_s": {name: [c / len(inputs) for c in t["cpu_s"]] for name, t in times.items()}}


def main() -> None:
    args = parse_args(__doc__, lambda p: p.add_argument("--aspirin", type=Path, default=None,
                                                        help="aspirin .npz (21 atoms) to measure beside ethanol"))
    sets = [SHARED_DATA / "ethanol_gfn2_500K.npz"] + ([args.aspirin] if args.aspirin else [])
    results = [measure(data, REPEATS[args.mode], args.mode == "smoke") for data in sets]
    rows = []
    for result in results:
        wall = {name: statistics.median(v) * 1e3 for name, v in result["wall_s"].items()}
        cpu = {name: statistics.median(v) * 1e3 for name, v in result["cpu_s"].items()}
        rows.append([result["data"], result["shapes"]["atoms"], result["shapes"]["edges"], result["load"],
                     wall["XLA defaults"], cpu["XLA defaults"], wall["YNNPACK fusions off"], cpu["YNNPACK fusions off"],
                     cpu["XLA defaults"] / cpu["YNNPACK fusions off"]])
    batch = results[0]["batch_size"]
    tables = [table(f"Default-model train step (batch {batch}, float32), XLA defaults vs YNNPACK fusions off",
                    "ms per step: median over rounds of an epoch of steps (compile excluded), wall and process CPU "
                    "time; both variants alternate; load = 1-min load average after the runs (2 cores, shared)",
                    ["data", "atom slots", "edge slots", "load", "defaults wall ms", "defaults CPU ms",
                     "off wall ms", "off CPU ms", "CPU ratio"], rows)]
    publish("bench_train_step", args, tables, {"results": results})


if __name__ == "__main__":
    main()
