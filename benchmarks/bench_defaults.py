"""Defaults study (issue 18, item 3): test accuracy of trainer settings at an equal number of optimiser work.

Every candidate is a set of :class:`~physnetjax.train.TrainConfig` changes to the
trainer defaults as they were before this study (:data:`BASELINE`: batch 16, learning
rate 3e-3; the other settings are today's defaults). Each is trained with the Python API on the same split of each data
set (``--datasets``: aspirin of /work/peers/data and ethanol of ../shared/data, both
1000 GFN2-xTB frames; 800/100/100 frames, seed 0, made by
:func:`bench_accuracy.split_without_leak`, so test frames are never trained on), once
per seed in ``--seeds`` (the seed sets initial weights and batch order, not the split).

Equal budget without wall time (the machine may be shared): a candidate that changes
the work per training sample (batch size, model size) is first timed against the
defaults in one process, alternately (default, candidate, default, …, ``--rounds``
pairs after one warm-up epoch each), as process CPU time of one training epoch
(``time.process_time``, steps blocked at the end of the epoch); its cost ratio r is the
median candidate epoch over the median default epoch. It then trains
``round(epochs / r)`` epochs where the defaults train ``epochs`` (``--epochs``, per
data set), so both spend the same CPU time on training steps. Candidates that change
only the loss, learning rate or EMA have the default step's cost (r = 1 by construction).

Reported per data set, candidate and seed: test force and energy MAE of the best
(EMA, validation-selected) checkpoint, epochs trained, cost ratio. Every finished run
is saved at once in ``bench_defaults.json`` (``bench_defaults_TAG.json`` with ``--tag``,
under ``data.runs``), and a rerun skips the runs already there (resumable);
``--candidates`` picks a subset.

A markdown table (one row per data set and candidate, both seeds and their mean) is
written beside the JSON (``.md``).

Usage: PYTHONPATH=. python benchmarks/bench_defaults.py [--candidates a,b] [--seeds 0,1] [--out DIR]
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from common import RESULTS, SHARED_DATA, machine_info, parse_args, print_table, table

DATASETS = {"aspirin": Path("/work/peers/data/aspirin_gfn2_500K.npz"), "ethanol": SHARED_DATA / "ethanol_gfn2_500K.npz"}
EPOCHS = {"aspirin": 8, "ethanol": 8}
"""Epochs of the defaults per data set (``--epochs`` overrides for all)."""

BASELINE = {"batch_size": 16, "learning_rate": 3e-3}
"""The trainer defaults before this study (issue 18, item 3); every candidate changes these."""

CANDIDATES = {
    "default": {},
    "stage0.2-Ew10": {"final_stage": 0.2, "final_energy_weight": 10.0},
    "stage0.2-Ew50": {"final_stage": 0.2, "final_energy_weight": 50.0},
    "lr5e-3": {"learning_rate": 5e-3},
    "lr1e-2": {"learning_rate": 1e-2},
    "batch8": {"batch_size": 8},
    "batch32": {"batch_size": 32},
    "features64": {"features": 64},
    "n_res2": {"n_res": 2},
    "ema0.99": {"ema_decay": 0.99},
    "iterations3": {"num_iterations": 3},
    "batch8-lr5e-3": {"batch_size": 8, "learning_rate": 5e-3},
    "batch8-lr1e-2": {"batch_size": 8, "learning_rate": 1e-2},
    "batch8-lr5e-3-stage0.2-Ew10": {"batch_size": 8, "learning_rate": 5e-3, "final_stage": 0.2,
                                    "final_energy_weight": 10.0},
}
"""Candidates in priority order: name → TrainConfig changes."""

STEP_COST_FIELDS = ("batch_size", "features", "max_degree", "num_iterations", "num_basis_functions", "cutoff", "n_res")
"""Settings that change the work per training sample (timed for a cost ratio)."""


def make_split(dataset: Path, work: Path) -> Path:
    """The 800/100/100 split of bench_accuracy (seed 0) as ``split.npz`` in ``work``."""
    from bench_accuracy import split_without_leak
    from physnetjax.data import save_split

    path = work / f"{dataset.stem}_split.npz"
    if not path.exists():
        positions = np.load(dataset)["R"]
        save_split(path, split_without_leak(positions, 800, 100, 100, seed=0))
    return path


def base_config(dataset: Path, split: Path, out: Path, **changes):
    from physnetjax.train import TrainConfig

    return TrainConfig(data=[str(dataset)], split_file=str(split), out=str(out), progress=False, plots=False,
                       **{**BASELINE, **changes})


def cost_ratio(dataset: Path, split: Path, work: Path, changes: dict, rounds: int) -> dict:
    """Median process-CPU time of one training epoch with ``changes`` over the defaults', timed alternately."""
    from physnetjax.train import Trainer

    trainers = []
    for name, overrides in (("default", {}), ("candidate", changes)):
        out = Path(tempfile.mkdtemp(dir=work, prefix=f"cost-{name}-"))
        trainers.append(Trainer(base_config(dataset, split, out, **overrides), out, resuming=False))
    times = ([], [])
    for repeat in range(rounds + 1):
        for k, trainer in enumerate(trainers):
            trainer.epoch += 1
            start = time.process_time()
            trainer._train_epoch(None, False)
            if repeat:
                times[k].append(time.process_time() - start)
    default, candidate = statistics.median(times[0]), statistics.median(times[1])
    return {"ratio": candidate / default, "default_epoch_cpu_s": times[0], "candidate_epoch_cpu_s": times[1]}


def train_once(dataset: Path, split: Path, work: Path, changes: dict, epochs: int, seed: int) -> dict:
    from physnetjax.train import train

    out = Path(tempfile.mkdtemp(dir=work, prefix="run-"))
    start = time.process_time()
    summary = train(base_config(dataset, split, out / "run", epochs=epochs, seed=seed, **changes))
    return {"epochs": epochs, "seed": seed, "test_forces_mae": summary["test"]["forces_mae"],
            "test_energy_mae": summary["test"]["energy_mae"], "valid_forces_mae": summary["valid"]["forces_mae"],
            "valid_energy_mae": summary["valid"]["energy_mae"], "best_epoch": summary["best_epoch"],
            "process_cpu_s": time.process_time() - start, "wall_s": summary["time_s"]}


def add_options(parser) -> None:
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated candidate names")
    parser.add_argument("--datasets", default="aspirin,ethanol")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the defaults (default: per data set)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing pairs per cost ratio")
    parser.add_argument("--equal-epochs", action="store_true", help="train every candidate the same epochs "
                        "(no cost ratio; a conservative check for candidates measured cheaper)")
    parser.add_argument("--tag", default="", help="suffix of the JSON name (bench_defaults_TAG.json), e.g. for "
                        "another --epochs")
    parser.add_argument("--work", type=Path, default=None, help="folder for runs (default: a temporary one)")


def load_previous(path: Path) -> dict:
    if path.exists():
        return json.loads(path.read_text())["data"]
    return {"runs": {}, "cost_ratios": {}}


def save(path: Path, args, data: dict) -> None:
    import datetime

    tables = summary_tables(data)
    record = {"benchmark": "bench_defaults", "mode": args.mode,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine_info(), "tables": tables, "plots": [], "data": data}
    path.write_text(json.dumps(record, indent=1) + "\n")


def summary_tables(data: dict) -> list:
    rows = []
    for key, run in data["runs"].items():
        dataset, name, _ = key.split("|")
        ratio = data["cost_ratios"].get(f"{dataset}|{name}", {}).get("ratio", 1.0)
        rows.append([dataset, name, f"{ratio:.2f}", run["epochs"], run["seed"], f"{run['test_forces_mae']:.4f}",
                     f"{run['test_energy_mae']:.4f}"])
    return [table("Defaults study: test MAE at equal training work", "best EMA checkpoint, 800/100/100 split",
                  ["data", "candidate", "cost ratio", "epochs", "seed", "test F MAE (eV/Å)", "test E MAE (eV)"],
                  rows)]


def markdown_table(data: dict) -> str:
    """One row per data set and candidate: cost ratio, epochs, test F and E MAE per seed and their mean."""
    grouped = {}
    for key, run in data["runs"].items():
        dataset, name, _ = key.split("|")
        grouped.setdefault((dataset, name), []).append(run)
    lines = ["| data | candidate | cost ratio | epochs | test F MAE (eV/Å) per seed | mean | "
             "test E MAE (eV) per seed | mean |", "|---|---|---|---|---|---|---|---|"]
    for (dataset, name), runs in grouped.items():
        runs = sorted(runs, key=lambda run: run["seed"])
        ratio = data["cost_ratios"].get(f"{dataset}|{name}", {}).get("ratio", 1.0)
        forces = [run["test_forces_mae"] for run in runs]
        energies = [run["test_energy_mae"] for run in runs]
        lines.append(f"| {dataset} | {name} | {ratio:.2f} | {runs[0]['epochs']} | "
                     f"{' / '.join(f'{f:.4f}' for f in forces)} | **{np.mean(forces):.4f}** | "
                     f"{' / '.join(f'{e:.4f}' for e in energies)} | {np.mean(energies):.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args(__doc__, add_options)
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / (f"bench_defaults_{args.tag}.json" if args.tag else "bench_defaults.json")
    data = load_previous(path)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_defaults_"))
    work.mkdir(parents=True, exist_ok=True)
    names = args.candidates.split(",")
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        raise SystemExit(f"unknown candidates {unknown}; known: {list(CANDIDATES)}")
    for name in names:
        changes = CANDIDATES[name]
        for dataset_name in args.datasets.split(","):
            dataset = DATASETS[dataset_name]
            split = make_split(dataset, work)
            cost_key = f"{dataset_name}|{name}"
            if (not args.equal_epochs and any(field in changes for field in STEP_COST_FIELDS)
                    and cost_key not in data["cost_ratios"]):
                data["cost_ratios"][cost_key] = cost_ratio(dataset, split, work, changes, args.rounds)
                save(path, args, data)
            ratio = data["cost_ratios"].get(cost_key, {}).get("ratio", 1.0)
            epochs = max(1, round((args.epochs or EPOCHS[dataset_name]) / ratio))
            for seed in (int(s) for s in args.seeds.split(",")):
                key = f"{dataset_name}|{name}|{seed}"
                if key in data["runs"] and data["runs"][key]["epochs"] == epochs:
                    continue
                data["runs"][key] = {**train_once(dataset, split, work, changes, epochs, seed), "changes": changes}
                save(path, args, data)
                print(key, json.dumps(data["runs"][key]), flush=True)
    for spec in summary_tables(data):
        print_table(spec)
    path.with_suffix(".md").write_text(markdown_table(data))


if __name__ == "__main__":
    main()
