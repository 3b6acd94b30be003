"""Ensemble training cost per epoch: K = 4 members against one model, the whole trainer loop.

Issue 16's target: K = 4 members per epoch ≤ 2.5x the time of one member on 2 CPU cores.
Two arms, each a ``physnetjax.train`` run with the default settings (features 32,
max_degree 1, 2 iterations, batch 8, float32) on ``ethanol_gfn2_500K.npz`` of
../shared/data (800 training frames) in its own subprocess, run **alternately**
(one, K, one, K, …) so that both see the same load: ``--ensemble 1`` and
``--ensemble 4``.

Per run: the wall time of epochs 2..E from ``metrics.csv`` (``time_s`` differences: the
whole loop — training steps, validation of every member and of the ensemble mean, force
check, checkpoint, logs; epoch 1 compiles), median over the run; the ratio to the one
model of the same round, median over rounds.

Usage: python benchmarks/bench_ensemble_epoch.py [--quick | --smoke] [--out DIR] [--data PATH]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import SHARED_DATA, parse_args, publish, table

REPOSITORY = Path(__file__).resolve().parents[1]
PLAN = {"full": (5, 8), "quick": (1, 5), "smoke": (1, 2)}  # mode: (rounds, epochs per run)
ARMS = {"one model": 1, "K = 4": 4}
"""Arm: members."""

WORKER = r"""
import csv, json, sys
from pathlib import Path
from physnetjax.train import TrainConfig
from physnetjax.train import loop

data, out, epochs, members, smoke = sys.argv[1:6]
small = dict(features=8, num_iterations=1, train=64, valid=16, test=16) if smoke == "True" else {}
config = TrainConfig(data=[data], out=out, epochs=int(epochs), ensemble=int(members), progress=False, plots=False,
                     **small)
loop.train(config)
with open(Path(out) / "metrics.csv", newline="") as handle:
    times = [float(row["time_s"]) for row in csv.DictReader(handle)]
print(json.dumps({"epoch_s": [b - a for a, b in zip(times, times[1:])], "first_epoch_s": times[0]}))
"""


def run_arm(data: Path, out: Path, epochs: int, members: int, smoke: bool) -> dict:
    """One training run in a subprocess; its epoch times."""
    process = subprocess.run([sys.executable, "-c", WORKER, str(data), str(out), str(epochs), str(members),
                              str(smoke)], cwd=REPOSITORY, capture_output=True, text=True,
                             env={**os.environ, "JAX_PLATFORMS": "cpu"})
    if process.returncode != 0:
        raise RuntimeError(f"training run {out.name} failed:\n{process.stderr[-3000:]}")
    result = json.loads(process.stdout.strip().splitlines()[-1])
    result["median_epoch_s"] = statistics.median(result["epoch_s"] or [result["first_epoch_s"]])
    return result


def main() -> None:
    args = parse_args(__doc__, lambda p: p.add_argument(
        "--data", type=Path, default=SHARED_DATA / "ethanol_gfn2_500K.npz", help="training data (npz)"))
    rounds, epochs = PLAN[args.mode]
    runs = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory() as work:
        for round_ in range(rounds):
            for arm, members in ARMS.items():
                out = Path(work) / f"{round_}_{members}"
                runs[arm].append(run_arm(args.data, out, epochs, members, args.mode == "smoke"))
                print(f"round {round_ + 1}/{rounds}: {arm}: {runs[arm][-1]['median_epoch_s']:.2f} s per epoch",
                      flush=True)
    ratios = {arm: statistics.median(r["median_epoch_s"] / one["median_epoch_s"]
                                     for r, one in zip(runs[arm], runs["one model"])) for arm in ARMS}
    rows = [[arm, statistics.median(r["median_epoch_s"] for r in runs[arm]), ratios[arm]] for arm in ARMS]
    tables = [table(f"Ensemble training per epoch ({args.data.name}, K = 4 vs one model, whole trainer loop)",
                    f"median epoch wall time of epochs 2..{epochs}, {rounds} interleaved round(s); ratio per round, "
                    "median", ["arm", "epoch (s)", "× one model"], rows)]
    publish("bench_ensemble_epoch", args, tables, {"runs": runs, "ratios": ratios, "epochs": epochs,
                                                   "target_ratio": 2.5})


if __name__ == "__main__":
    main()
