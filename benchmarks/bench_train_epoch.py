"""Training-loop throughput, before and after the device-resident batches: old and new trainer side by side.

Both trainers run the default ``python -m physnetjax.train`` settings (features 32,
max_degree 1, 2 iterations, batch 16, float32) on ``ethanol_gfn2_500K.npz`` of
../shared/data (800 training frames), each in its own subprocess, **alternately**
(old, new, old, new, …, ``rounds`` pairs) so that both see the same machine load;
the load average is recorded before every run. "old" is the package at ``--baseline``
(default: the commit before this change), extracted with ``git archive``; "new" is
this working tree.

Per run: the wall time of each epoch from ``metrics.csv`` (``time_s`` differences of
epochs 2..E: the whole loop — training steps, validation, force check, checkpoint,
logs — in steady state; epoch 1 compiles), reported as training samples/s = training
frames / median epoch time (and per process CPU second: steadier than wall time when
other jobs share the cores), and the time spent in each part of the loop (the
Trainer's methods, timed by wrapping them). The ratio new/old is taken per
interleaved pair and its median reported.

Profile (``--profile``, this tree only, one Trainer, steady state, median of repeats):
the parts of one epoch of the per-step host path (host batch packing, host→device
transfer, the jitted steps on ready batches, the same blocking after every step, the
EMA update alone) beside the device-gathered steps, and the per-epoch parts
(validation on host-packed batches with a sync per batch vs device-gathered fixed batches, checkpoint written synchronously vs handed
to the background writer, force check, CSV/JSON logs).

Writes ``bench_train_epoch.json`` (``bench_train_epoch_<data>.json`` for another ``--data``).

``--data PATH`` trains on another set (e.g. aspirin, 21 atoms); ``--old-without-ynn`` adds a third arm,
the old trainer with ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=`` (the XLA:CPU option the new
steps compile with, :mod:`physnetjax.compilation`), to show how much of the gain that option is.

Usage: python benchmarks/bench_train_epoch.py [--quick | --smoke] [--out DIR] [--baseline REF] [--data PATH]
       [--old-without-ynn] [--profile]
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from common import BENCHMARKS, SHARED_DATA, parse_args, publish, table

REPOSITORY = BENCHMARKS.resolve().parent
BASELINE = "bc97357"
"""The last commit before device-resident batches, validation scan and background checkpoints."""

PLAN = {"full": (8, 3), "quick": (4, 2), "smoke": (2, 1)}  # mode: (epochs per run, interleaved pairs)

WORKER = r"""
import collections, csv, json, sys, time
from pathlib import Path
from physnetjax.train import TrainConfig
from physnetjax.train import loop

data, out, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
parts = collections.defaultdict(float)
finishing = [False]
names = ("_train_epoch", "evaluate", "_save", "_force_check", "_append_csv", "_write_json")

def timed(name, method):
    def call(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            if not finishing[0]:
                parts[name] += time.perf_counter() - start
    return call

for name in names:
    if hasattr(loop.Trainer, name):
        setattr(loop.Trainer, name, timed(name, getattr(loop.Trainer, name)))
finish = loop.Trainer._finish

def timed_finish(self, *args):
    finishing[0] = True
    start = time.perf_counter()
    result = finish(self, *args)
    parts["_finish"] += time.perf_counter() - start
    return result

loop.Trainer._finish = timed_finish
cpu_marks = []
append_csv = loop.Trainer._append_csv

def marked_append_csv(self, *args):
    cpu_marks.append(time.process_time())
    return append_csv(self, *args)

loop.Trainer._append_csv = marked_append_csv  # once per epoch, in both trainers
config = TrainConfig(data=[data], out=out, epochs=epochs, progress=False, plots=False)
start = time.perf_counter()
loop.train(config)
total = time.perf_counter() - start
with open(Path(out) / "metrics.csv", newline="") as handle:
    times = [float(row["time_s"]) for row in csv.DictReader(handle)]
train_frames = len(__import__("numpy").load(Path(out) / "split.npz")["train"])
print(json.dumps({"epoch_s": [b - a for a, b in zip(times, times[1:])], "first_epoch_s": times[0],
                  "epoch_cpu_s": [b - a for a, b in zip(cpu_marks, cpu_marks[1:])],
                  "total_s": total, "parts_s": dict(parts), "train_frames": train_frames,
                  "module": loop.__file__}))
"""


def extract(ref: str, into: Path) -> Path:
    """The ``physnetjax`` package at git ``ref`` unpacked under ``into``."""
    archive = into / "baseline.tar"
    subprocess.run(["git", "-C", str(REPOSITORY), "archive", "-o", str(archive), ref, "physnetjax"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "baseline", filter="data")
    return into / "baseline"


def load_average() -> float:
    return os.getloadavg()[0]


def run_trainer(root: Path, data: Path, out: Path, epochs: int, xla_flags: str | None = None) -> dict:
    """One training run with the package under ``root`` (``xla_flags``: XLA_FLAGS of the run); the worker's JSON
    plus the load before it."""
    load = load_average()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    process = subprocess.run([sys.executable, "-c", WORKER, str(data), str(out), str(epochs)], cwd=root,
                             capture_output=True, text=True, env=env)
    if process.returncode != 0:
        raise RuntimeError(f"training run in {root} failed:\n{process.stderr[-3000:]}")
    result = json.loads(process.stdout.strip().splitlines()[-1])
    if not result["module"].startswith(str(root)):
        raise RuntimeError(f"the run imported {result['module']}, not the package under {root}")
    epoch = statistics.median(result["epoch_s"]) if result["epoch_s"] else result["first_epoch_s"]
    cpu = statistics.median(result["epoch_cpu_s"]) if result["epoch_cpu_s"] else math.nan
    return {**result, "load_before": load, "median_epoch_s": epoch, "samples_per_s": result["train_frames"] / epoch,
            "median_epoch_cpu_s": cpu, "samples_per_cpu_s": result["train_frames"] / cpu}


PROFILE = r"""
import json, shutil, statistics, sys, time
from pathlib import Path
import jax, jax.numpy as jnp, numpy as np
from physnetjax.train import TrainConfig
from physnetjax.train.loop import Trainer
from physnetjax.train.batching import iterate_batches
from physnetjax.train.parallel import shard_batch

data, out, repeats = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
out.mkdir(parents=True)
config = TrainConfig(data=[data], out=str(out), progress=False, plots=False)
trainer = Trainer(config, out, resuming=False)
trainer.epoch = 1
scale = jnp.float32(1.0)
results = {}

def median_time(name, fn, before=lambda: None):
    before()
    fn()
    times = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    results[name] = statistics.median(times)

def host_validation():
    frames, trainer.device_frames = trainer.device_frames, None
    try:
        trainer.evaluate(trainer.state.ema_params, trainer.split["valid"])
    finally:
        trainer.device_frames = frames

def host_batches():
    return list(iterate_batches(trainer.dataset, trainer.split["train"], trainer.energies, trainer.model,
                                config.batch_size, trainer.shapes, seed=[config.seed, 1]))

def transfer():
    return jax.block_until_ready([(shard_batch(b, trainer.mesh), shard_batch(l, trainer.mesh)) for b, l in packed])

packed = host_batches()
ready = transfer()
from physnetjax.train.loop import _compiled
host_step = _compiled(trainer.model, config, trainer.steps_per_epoch, trainer.shapes)[2]

def host_steps(block):
    for batch, labels in ready:
        trainer.state, loss, _ = host_step(trainer.state, batch, labels, scale)
        if block:
            float(loss)
    jax.block_until_ready(trainer.state)

def device_steps():
    for frames, rows in list(trainer.training_inputs()):
        trainer.state, loss, _ = trainer.train_step(trainer.state, frames, rows, scale)
    jax.block_until_ready(trainer.state)

ema = jax.jit(lambda e, p: jax.tree_util.tree_map(lambda a, b: 0.999 * a + 0.001 * b, e, p))

def ema_updates():
    params = trainer.state.params
    for _ in range(trainer.steps_per_epoch):
        params = ema(params, trainer.state.params)
    jax.block_until_ready(params)

row = {"epoch": 1, "lr": 1.0, "train_loss": 1.0, "grad_norm": 1.0, "valid_loss": 1.0}
median_time("host batch packing (epoch)", host_batches)
median_time("host-to-device transfer (epoch)", transfer)
median_time("jitted steps on ready batches (epoch)", lambda: host_steps(False))
median_time("same, host sync after every step (epoch)", lambda: host_steps(True))
median_time("EMA update alone, once per step (epoch)", ema_updates)
median_time("device-gathered steps (epoch, new)", device_steps)
median_time("validation, host batches, sync per batch (old)", host_validation)
median_time("validation, device-gathered fixed batches (new)",
            lambda: trainer.evaluate(trainer.state.ema_params, trainer.split["valid"]))
directory = out / "checkpoints" / "epoch-0001"
median_time("checkpoint write, synchronous (old)", lambda: trainer._write_checkpoint(
    directory, jax.device_get(trainer.state), trainer._metadata(row), True))
median_time("checkpoint handed to the background writer (new)", lambda: trainer._save(row, True),
            before=trainer.writer.wait)
trainer.writer.wait()
median_time("force check", lambda: trainer._force_check(jax.device_get(trainer.state.ema_params)))
median_time("CSV + JSON logs", lambda: (trainer._append_csv(row), trainer._write_json()))
print(json.dumps({"parts_s": results, "steps_per_epoch": trainer.steps_per_epoch}))
"""


def profile(data: Path, out: Path, repeats: int) -> dict:
    process = subprocess.run([sys.executable, "-c", PROFILE, str(data), str(out), str(repeats)], cwd=REPOSITORY,
                             capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    if process.returncode != 0:
        raise RuntimeError(f"profile failed:\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


NO_YNN_FLAGS = "--xla_cpu_experimental_ynn_fusion_type="
"""XLA_FLAGS giving the old trainer the YNNPACK-fusion setting the new steps compile with (physnetjax.compilation)."""


def main() -> None:
    args = parse_args(__doc__, lambda p: (
        p.add_argument("--baseline", default=BASELINE, help="git ref of the old trainer (default %(default)s)"),
        p.add_argument("--data", type=Path, default=SHARED_DATA / "ethanol_gfn2_500K.npz",
                       help="training set (default: ethanol_gfn2_500K.npz of the shared data)"),
        p.add_argument("--old-without-ynn", action="store_true",
                       help=f"also run the old trainer with XLA_FLAGS={NO_YNN_FLAGS} (how much is the XLA option)"),
        p.add_argument("--profile", action="store_true", help="also time the parts of one epoch")))
    epochs, rounds = PLAN[args.mode]
    data = args.data
    arms = {"old": ("old", None), "new": ("new", None)}
    if args.old_without_ynn:
        arms["old-no-ynn"] = ("old", NO_YNN_FLAGS)
    runs = {name: [] for name in arms}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        roots = {"old": extract(args.baseline, tmp), "new": REPOSITORY}
        for k in range(rounds):
            for name, (root, flags) in arms.items():
                runs[name].append(run_trainer(roots[root], data, tmp / f"{name}-{k}", epochs, flags))
                print(f"round {k + 1}/{rounds} {name}: {runs[name][-1]['samples_per_s']:.0f} samples/s, "
                      f"{runs[name][-1]['samples_per_cpu_s']:.0f} samples/CPU-s "
                      f"(load {runs[name][-1]['load_before']:.1f})", flush=True)
        parts = profile(data, tmp / "profile", 3 if args.mode == "smoke" else 7) if args.profile else None
    ratios = [n["samples_per_s"] / o["samples_per_s"] for o, n in zip(runs["old"], runs["new"])]
    cpu_ratios = [n["samples_per_cpu_s"] / o["samples_per_cpu_s"] for o, n in zip(runs["old"], runs["new"])]
    total_ratios = [o["total_s"] / n["total_s"] for o, n in zip(runs["old"], runs["new"])]
    train_frames = runs["new"][0]["train_frames"]
    columns = ["pair"]
    for name in arms:
        columns += [f"load {name}", f"{name} samples/s", f"{name} samples/CPU-s"]
    columns += ["new / old (wall)", "new / old (CPU)", "old run s", "new run s"]
    rows = []
    for k in range(rounds):
        row = [k + 1]
        for name in arms:
            run = runs[name][k]
            row += [run["load_before"], run["samples_per_s"], run["samples_per_cpu_s"]]
        rows.append(row + [ratios[k], cpu_ratios[k], runs["old"][k]["total_s"], runs["new"][k]["total_s"]])
    tables = [table(f"Training loop, default model, {data.stem} ({train_frames} training frames, batch 16, "
                    f"{epochs} epochs per run): old ({args.baseline}) and new, interleaved",
                    "samples/s = training frames / median epoch wall time (epochs 2.., whole loop incl. validation, "
                    "force check, checkpoint, logs); samples/CPU-s = the same per median process CPU time of an "
                    "epoch (all threads); run s = whole command incl. start-up and compilation; load = "
                    "1-min load average before the run (2 cores, shared)", columns, rows)]
    part_names = sorted(set().union(*(r["parts_s"] for runs_of in runs.values() for r in runs_of)))
    tables.append(table("Where the loop's time goes (median over runs, seconds per epoch)",
                        "Trainer methods wrapped and timed; _train_epoch includes epoch 1's compilation",
                        ["part", *(f"{name} s/epoch" for name in arms)],
                        [[name, *(statistics.median(r["parts_s"].get(name, 0.0) for r in runs[which]) / epochs
                                  for which in arms)] for name in part_names]))
    if parts:
        tables.append(table("Profile of one epoch (this tree, one Trainer, 50 steps)",
                            "median of repeats, blocked at the end of each part, compile excluded",
                            ["part", "s"], [[name, value] for name, value in parts["parts_s"].items()]))
    summary = {"median_ratio_samples_per_s": statistics.median(ratios),
               "median_ratio_samples_per_cpu_s": statistics.median(cpu_ratios),
               "median_ratio_run_time": statistics.median(total_ratios)}
    if args.old_without_ynn:
        summary["median_ratio_samples_per_s_vs_old_without_ynn"] = statistics.median(
            n["samples_per_s"] / o["samples_per_s"] for o, n in zip(runs["old-no-ynn"], runs["new"]))
    print(f"new / old samples/s, median over {rounds} interleaved pairs: {summary['median_ratio_samples_per_s']:.2f} "
          f"(wall), {summary['median_ratio_samples_per_cpu_s']:.2f} (CPU time); "
          f"whole run {summary['median_ratio_run_time']:.2f}x faster")
    name = "bench_train_epoch" if data.stem == "ethanol_gfn2_500K" else f"bench_train_epoch_{data.stem}"
    publish(name, args, tables, {"baseline": args.baseline, "data": str(data), "epochs": epochs, "runs": runs,
                                 "ratios": ratios, "cpu_ratios": cpu_ratios, "profile": parts, **summary})


if __name__ == "__main__":
    main()
