"""Training in float64 against float32: the cost of ``python -m physnetjax.train --float64`` per epoch.

Both precisions run the default trainer settings (features 32, max_degree 1, 2 iterations, batch 8) on the
bundled ethanol set (1600 training frames), each run in its own subprocess of ``python -m physnetjax.train``,
**alternately** (float32, float64, float32, …, ``rounds`` pairs) so that both see the same machine load. Per run:
the wall time of epochs 2..E from ``metrics.csv`` (``time_s`` differences: the whole loop in steady state;
epoch 1 compiles), the process's CPU time, and the test errors of its best checkpoint (same seed and split in
both precisions). The ratio float64/float32 of the median epoch time is taken per pair and its median reported.

Writes ``bench_train_float64.json``.

Usage: python benchmarks/bench_train_float64.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import parse_args, publish_timed_table

PLAN = {"full": (6, 3), "quick": (4, 2), "smoke": (2, 1)}  # mode: (epochs per run, interleaved pairs)


def one_run(float64: bool, epochs: int, folder: Path) -> dict:
    """Train once in a subprocess; the median steady-state epoch time (s), the CPU time (s) and the test MAEs."""
    out = folder / ("float64" if float64 else "float32")
    command = [sys.executable, "-m", "physnetjax.train", "--epochs", str(epochs), "--out", str(out),
               "--no-progress", "--no-plots", "--quiet"] + (["--float64"] if float64 else [])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out / "metrics.csv", newline="") as handle:
        ends = [float(row["time_s"]) for row in csv.DictReader(handle)]
    final = json.loads((out / "metrics.json").read_text())["final"]
    steady = [b - a for a, b in zip(ends, ends[1:])] or ends
    return {"epoch_s": statistics.median(steady), "epochs_s": steady,
            "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "test_energy_mae_eV": final["test"]["energy_mae"], "test_forces_mae_eV_per_A": final["test"]["forces_mae"]}


def main() -> None:
    args = parse_args(__doc__)
    epochs, rounds = PLAN[args.mode]
    load_before = os.getloadavg()
    runs = {"float32": [], "float64": []}
    with tempfile.TemporaryDirectory() as scratch:
        for k in range(rounds):
            for float64 in (False, True):
                folder = Path(scratch) / f"round{k}"
                runs["float64" if float64 else "float32"].append(one_run(float64, epochs, folder))
    ratios = [b["epoch_s"] / a["epoch_s"] for a, b in zip(runs["float32"], runs["float64"])]
    rows = []
    for name, results in runs.items():
        rows.append([name, statistics.median(r["epoch_s"] for r in results),
                     statistics.median(r["cpu_s"] for r in results),
                     statistics.median(r["test_energy_mae_eV"] for r in results),
                     statistics.median(r["test_forces_mae_eV_per_A"] for r in results)])
    rows.append(["float64 / float32, median of pairs", statistics.median(ratios), "", "", ""])
    publish_timed_table(
        "bench_train_float64", args,
        f"Training precision: default model, bundled ethanol, {epochs} epochs per run, {rounds} interleaved pairs",
        "median over runs", ["precision", "epoch s (2..E)", "process CPU s", "test E MAE eV", "test F MAE eV/Å"],
        rows, {"runs": runs, "ratios": ratios, "epochs": epochs, "rounds": rounds}, load_before)


if __name__ == "__main__":
    main()
