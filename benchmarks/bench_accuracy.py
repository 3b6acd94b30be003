"""Test accuracy at equal training time: physnetjax beside MACE and apax on one split of a real set.

Protocol (issue 18):

1. The data set (``--dataset``, a PhysNet ``.npz``) is split once with ``--seed`` into
   ``--n-train``/``--n-valid``/``--n-test`` frames (default 800/100/100,
   :func:`physnetjax.data.random_split`). :func:`split_without_leak` checks that the
   parts are disjoint and that no test geometry occurs among the training or
   validation frames; the test frames are never given to a trainer. The split is
   written as ``split.npz`` (for physnetjax's ``--split-file``) and as extxyz files
   (``train.xyz``, ``valid.xyz``, ``test.xyz``: energy and forces both as ASE
   calculator results, which apax reads, and as ``REF_energy``/``REF_forces``, which
   MACE reads).
2. Each trainer in ``--trainers`` trains on the same training and validation frames for
   the same wall-clock time, each in its own process with its own interpreter:

   * ``physnetjax``: ``python -m physnetjax.train --max-time BUDGET`` (its schedule is
     laid out over the budget; it stops by itself and keeps the best EMA checkpoint).
     Extra options: ``--physnetjax-args``.
   * ``mace`` (``--mace-python``, mace-torch 0.3.16): ``mace_run_train`` with a large
     ``--max_num_epochs`` (its default plateau schedule does not depend on it), killed
     at the deadline; then the same command with ``--restart_latest
     --max_num_epochs N`` (N = epoch of the last checkpoint, so it trains no further)
     exports the last checkpoint MACE saved, which is its best one by validation loss.
   * ``apax`` (``--apax-python``, apax 0.14): ``apax train config.yaml`` (GMNN defaults
     of ``apax template train``, batch ``--apax-batch-size``), killed at the deadline if
     still running; its ``best`` parameters (best validation loss) are evaluated. Its
     learning rate falls linearly over ``--apax-epochs``: set it to the epochs a first
     run completed within the budget, so that the schedule ends at the deadline.

   The deadline of a peer is measured from the start of its process and equals the
   wall time of the physnetjax process (its ``--max-time`` budget plus its start-up,
   compilation, final test and checkpoint writing) when physnetjax ran first, else
   ``--budget-s``; so a peer never gets less wall time than physnetjax.
3. Every model predicts energies and forces of the test frames with batched calls in
   its own framework (``benchmarks/peers/*_predict.py`` for the peers,
   :func:`physnetjax.eval.predictions.predict_dataset` for physnetjax), float32, batch
   ``--eval-batch-size``; the errors are computed here, the same way for all, against
   the float64 labels of the ``.npz``:

       energy MAE = mean_m |E_m − E_m^ref|                       (eV)
       force MAE  = mean over real atoms i and components a of |F_mia − F_mia^ref|  (eV/Å)

   Inference throughput (molecules/s) = test frames / median wall time of a full pass
   over them (host batching and neighbour lists included; a first pass compiles and is
   not timed). Training throughput (samples/s) = completed epochs × training frames /
   wall time of the training process (start-up, compilation, validation and
   checkpoints included).

Writes ``bench_accuracy_<dataset stem>_<budget>s.json`` (trainer versions, exact
commands, logs' paths, the split, all numbers) and a markdown table for
``benchmarks/README.md`` next to it (``.md``). On a shared machine the numbers are
not figures: run on an otherwise idle machine.

Usage:
  PYTHONPATH=. python benchmarks/bench_accuracy.py --dataset FILE.npz --budget-s 240 \\
      --trainers physnetjax,mace,apax --mace-python /work/peers/mace/bin/python \\
      --apax-python /work/peers/apax/bin/python [--work DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import RESULTS, format_cell, machine_info

BENCHMARKS = Path(__file__).resolve().parent
REPOSITORY = BENCHMARKS.parent
PEERS = BENCHMARKS / "peers"
TRAINERS = ("physnetjax", "mace", "apax")
KILL_GRACE_S = 20.0
"""Seconds between SIGTERM and SIGKILL when a trainer is stopped at its deadline."""

logger = logging.getLogger("bench_accuracy")


def split_without_leak(positions: np.ndarray, n_train: int, n_valid: int, n_test: int, seed: int) -> dict:
    """A seeded random train/valid/test split of M frames whose test geometries are unseen in training.

    Args:
      positions: (M, n, 3) positions in Å of the frames.
      n_train, n_valid, n_test: frame counts (each ≥ 1, sum ≤ M).
      seed: seed of the shuffle.

    Returns:
      dict ``train``, ``valid``, ``test`` of sorted int64 index arrays.

    Raises:
      ValueError: bad counts, or (see :func:`check_no_leak`) a test geometry that
        also occurs among the training or validation frames.
    """
    from physnetjax.data import check_split, random_split

    if min(n_train, n_valid, n_test) < 1:
        raise ValueError(f"every part needs >= 1 frame, received train={n_train}, valid={n_valid}, test={n_test}")
    split = random_split(len(positions), valid=n_valid, test=n_test, train=n_train, seed=seed)
    split = check_split(split, len(positions))
    check_no_leak(positions, split)
    return split


def check_no_leak(positions: np.ndarray, split: dict) -> None:
    """ValueError if the parts of ``split`` share a frame index or a test frame's geometry (to 1e-6 Å) is seen.

    A geometry is compared as the bytes of its positions rounded to 1e-6 Å, so a
    duplicated frame (same positions under another index) counts as a leak.
    """
    parts = {name: set(np.asarray(split[name]).tolist()) for name in ("train", "valid", "test")}
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        shared = parts[a] & parts[b]
        if shared:
            raise ValueError(f"split: {a} and {b} share frames {sorted(shared)[:5]}")
    keys = [np.round(np.asarray(frame, np.float64), 6).tobytes() for frame in positions]
    seen = {keys[k] for k in parts["train"] | parts["valid"]}
    leaked = sorted(k for k in parts["test"] if keys[k] in seen)
    if leaked:
        raise ValueError(f"split: test frames {leaked[:5]} have the geometry of a training/validation frame")


def held_out_errors(energy: np.ndarray, forces: np.ndarray, reference) -> dict:
    """Energy MAE (eV) over frames and force MAE (eV/Å) over real atoms and components (module docstring).

    ``energy`` (M,), ``forces`` (M, n', 3) with n' ≥ the largest atom count (zero
    padded); ``reference`` a :class:`physnetjax.data.Dataset` of the same M frames.
    """
    energy, forces = np.asarray(energy, np.float64), np.asarray(forces, np.float64)
    if energy.shape != reference.E.shape:
        raise ValueError(f"predicted energies have shape {energy.shape}, expected {reference.E.shape}")
    n = reference.max_atoms
    real = np.arange(n)[None, :] < reference.N[:, None]
    force_errors = np.abs(forces[:, :n] - reference.F)[real]
    return {"energy_mae_eV": float(np.mean(np.abs(energy - reference.E))),
            "forces_mae_eV_per_A": float(np.mean(force_errors))}


def write_extxyz(path: Path, dataset, indices) -> None:
    """Frames ``indices`` of ``dataset`` as extxyz: E/F as calculator results and as REF_energy/REF_forces."""
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for k in indices:
        count = int(dataset.N[k])
        atoms = ase.Atoms(numbers=dataset.Z[k, :count], positions=dataset.R[k, :count])
        forces = dataset.F[k, :count]
        atoms.info["REF_energy"] = float(dataset.E[k])
        atoms.arrays["REF_forces"] = np.array(forces)
        atoms.calc = SinglePointCalculator(atoms, energy=float(dataset.E[k]), forces=np.array(forces))
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")


def run_until(command: list, cwd: Path, log: Path, deadline_s: float | None, env: dict | None = None) -> dict:
    """Run ``command`` (output to ``log``), stopping it at ``deadline_s`` seconds after its start.

    At the deadline the process group gets SIGTERM, then SIGKILL after
    :data:`KILL_GRACE_S`. Returns ``wall_s``, ``returncode`` and ``killed`` (bool).
    """
    start = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        killed = False
        try:
            process.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            killed = True
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    wall = time.perf_counter() - start
    logger.info("%s: %.1f s, exit %s%s", shlex.join(map(str, command[:3])), wall, process.returncode,
                " (stopped at the deadline)" if killed else "")
    return {"wall_s": wall, "returncode": process.returncode, "killed": killed}


def peer_version(python: str, distribution: str) -> str:
    """Installed version of ``distribution`` in the interpreter ``python``."""
    out = subprocess.run([python, "-c", f"import importlib.metadata as m; print(m.version({distribution!r}))"],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise ValueError(f"{python} has no {distribution} installed: {out.stderr.strip().splitlines()[-1:]}")
    return out.stdout.strip()


def predicted(npz: Path) -> dict:
    """The arrays written by a ``peers/*_predict.py`` script."""
    with np.load(npz) as data:
        return {key: data[key] for key in data.files}


def train_physnetjax(args, work: Path, test) -> dict:
    """Train with ``python -m physnetjax.train --max-time``; evaluate its best checkpoint on ``test``."""
    import jax

    import physnetjax
    from physnetjax.checkpoint import load_checkpoint
    from physnetjax.eval.predictions import predict_dataset

    run_dir = work / "physnetjax"
    command = [args.physnetjax_python, "-m", "physnetjax.train", "--data", str(args.dataset.resolve()),
               "--split-file", str(work / "split.npz"), "--max-time", str(args.budget_s), "--seed", str(args.seed),
               "--out", str(run_dir), "--no-progress", "--no-plots", *shlex.split(args.physnetjax_args)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    run = run_until(command, REPOSITORY, work / "physnetjax.log", None, env)
    if run["returncode"] != 0:
        raise RuntimeError(f"physnetjax training failed (exit {run['returncode']}), see {work / 'physnetjax.log'}")
    final = json.loads((run_dir / "metrics.json").read_text())["final"]
    model, params = load_checkpoint(run_dir / "best")
    predict_dataset(model, params, test, batch_size=args.eval_batch_size)
    seconds, out = [], None
    for _ in range(args.eval_repeats):
        start = time.perf_counter()
        out = predict_dataset(model, params, test, batch_size=args.eval_batch_size)
        seconds.append(time.perf_counter() - start)
    return {"version": physnetjax.__version__, "command": shlex.join(command), "log": str(work / "physnetjax.log"),
            "stopped": f"by itself ({final['stop_reason']})", "epochs": int(final["epochs_run"]),
            "train_wall_s": float(final["time_s"]), "process_wall_s": run["wall_s"],
            "budget_counted_s": float(final["train_time_s"]),
            "parameters": int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params))),
            "energy": out.energy, "forces": out.forces, "inference_seconds": seconds,
            "notes": f"best EMA checkpoint (epoch {final['best_epoch']}); model {json.dumps(model.config())}"}


def mace_command(args, work: Path) -> list:
    """``mace_run_train`` on train.xyz/valid.xyz (no test file: the test frames are evaluated separately)."""
    mace_run_train = str(Path(args.mace_python).parent / "mace_run_train")
    return [mace_run_train, "--name", "mace", "--seed", str(args.seed), "--device", "cpu",
            "--default_dtype", "float32", "--train_file", str(work / "train.xyz"),
            "--valid_file", str(work / "valid.xyz"), "--energy_key", "REF_energy", "--forces_key", "REF_forces",
            "--E0s", "average", "--eval_interval", "1", "--work_dir", str(work / "mace"),
            *shlex.split(args.mace_args)]


def train_mace(args, work: Path, test, deadline_s: float) -> dict:
    """Train MACE until ``deadline_s``; export and evaluate the last (= best) checkpoint it saved."""
    (work / "mace").mkdir()
    command = mace_command(args, work) + ["--max_num_epochs", "100000"]
    run = run_until(command, work / "mace", work / "mace.log", deadline_s)
    checkpoints = sorted((work / "mace").rglob("*_epoch-*.pt"),
                         key=lambda p: int(re.search(r"_epoch-(\d+)", p.name).group(1)))
    text = (work / "mace.log").read_text(errors="replace")
    epochs = len({int(e) for e in re.findall(r"Epoch (\d+):", text)})
    result = {"version": peer_version(args.mace_python, "mace-torch"), "command": shlex.join(command),
              "log": str(work / "mace.log"), "epochs": epochs, "train_wall_s": run["wall_s"],
              "process_wall_s": run["wall_s"],
              "stopped": "killed at the deadline" if run["killed"] else f"by itself (exit {run['returncode']})"}
    if not checkpoints:
        return {**result, "notes": "no checkpoint was saved within the budget"}
    saved_epoch = int(re.search(r"_epoch-(\d+)", checkpoints[-1].name).group(1))
    export = mace_command(args, work) + ["--max_num_epochs", str(saved_epoch), "--restart_latest"]
    run_until(export, work / "mace", work / "mace_export.log", None)
    models = [p for p in (work / "mace").rglob("*.model") if "compiled" not in p.name]
    if not models:
        raise RuntimeError(f"MACE export wrote no .model file, see {work / 'mace_export.log'}")
    out = work / "mace_test.npz"
    predict = [args.mace_python, str(PEERS / "mace_predict.py"), str(models[0]), str(work / "test.xyz"), str(out),
               "--batch-size", str(args.eval_batch_size), "--repeats", str(args.eval_repeats)]
    if run_until(predict, work, work / "mace_predict.log", None)["returncode"] != 0:
        raise RuntimeError(f"MACE prediction failed, see {work / 'mace_predict.log'}")
    values = predicted(out)
    return {**result, "export_command": shlex.join(export), "predict_command": shlex.join(predict),
            "parameters": int(values["parameters"]), "energy": values["energy"], "forces": values["forces"],
            "inference_seconds": values["seconds"].tolist(),
            "notes": f"checkpoint of epoch {saved_epoch} (MACE keeps the one of lowest validation loss)"}


APAX_CONFIG = """n_epochs: {epochs}
seed: {seed}
data:
  directory: {directory}
  experiment: apax
  train_data_path: {train}
  val_data_path: {valid}
  n_train: {n_train}
  n_valid: {n_valid}
  batch_size: {batch_size}
  valid_batch_size: 100
metrics:
  - name: energy
    reductions: [mae]
  - name: forces
    reductions: [mae, mse]
loss:
  - name: energy
  - name: forces
    weight: 4.0
"""
"""apax's own ``apax template train`` (GMNN model defaults, its loss weights), filled with this split."""


def train_apax(args, work: Path, test, split: dict, deadline_s: float) -> dict:
    """Train apax until ``deadline_s`` (or its ``--apax-epochs``); evaluate its best parameters."""
    directory = work / "apax"
    directory.mkdir()
    config = directory / "config.yaml"
    config.write_text(APAX_CONFIG.format(epochs=args.apax_epochs, seed=args.seed, directory=directory,
                                         train=work / "train.xyz", valid=work / "valid.xyz",
                                         n_train=len(split["train"]), n_valid=len(split["valid"]),
                                         batch_size=args.apax_batch_size))
    command = [str(Path(args.apax_python).parent / "apax"), "train", str(config)]
    run = run_until(command, directory, work / "apax.log", deadline_s)
    log_csv = directory / "apax" / "log.csv"
    epochs = max(0, len(log_csv.read_text().strip().splitlines()) - 1) if log_csv.exists() else 0
    result = {"version": peer_version(args.apax_python, "apax"), "command": shlex.join(command),
              "config": config.read_text(), "log": str(work / "apax.log"), "epochs": epochs,
              "train_wall_s": run["wall_s"], "process_wall_s": run["wall_s"],
              "stopped": "killed at the deadline" if run["killed"] else f"by itself (exit {run['returncode']})"}
    if not any(path.is_file() for path in (directory / "apax" / "best").rglob("*")):
        return {**result, "notes": "no checkpoint was saved within the budget"}
    out = work / "apax_test.npz"
    predict = [args.apax_python, str(PEERS / "apax_predict.py"), str(directory / "apax"), str(work / "test.xyz"),
               str(out), "--batch-size", str(args.eval_batch_size), "--repeats", str(args.eval_repeats)]
    if run_until(predict, work, work / "apax_predict.log", None)["returncode"] != 0:
        raise RuntimeError(f"apax prediction failed, see {work / 'apax_predict.log'}")
    values = predicted(out)
    return {**result, "predict_command": shlex.join(predict), "parameters": int(values["parameters"]),
            "energy": values["energy"], "forces": values["forces"], "inference_seconds": values["seconds"].tolist(),
            "notes": "best parameters by validation loss (apax's best/ checkpoint)"}


def summarise(name: str, result: dict, test, n_train: int) -> dict:
    """The trainer's row: errors, throughputs and provenance, without the raw predictions."""
    row = {key: value for key, value in result.items() if key not in ("energy", "forces")}
    row["trainer"] = name
    row["train_samples_per_s"] = result["epochs"] * n_train / result["train_wall_s"] if result["epochs"] else None
    if "energy" in result:
        row.update(held_out_errors(result["energy"], result["forces"], test))
        row["inference_molecules_per_s"] = len(test) / float(np.median(result["inference_seconds"]))
    return row


def markdown(rows: list, args, split: dict) -> str:
    """The side-by-side table for benchmarks/README.md."""
    header = ["trainer", "version", "parameters", "epochs", "stopped", "train wall s", "train samples/s",
              "test E MAE (eV)", "test F MAE (eV/Å)", "batched E+F (molecules/s)"]
    lines = [f"{args.dataset.name}, {len(split['train'])}/{len(split['valid'])}/{len(split['test'])} split "
             f"(seed {args.seed}), budget {args.budget_s:g} s, {datetime.date.today().isoformat()}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["trainer"], row["version"], row.get("parameters"), row["epochs"], row["stopped"],
                 row["train_wall_s"], row["train_samples_per_s"], row.get("energy_mae_eV"),
                 row.get("forces_mae_eV_per_A"), row.get("inference_molecules_per_s")]
        lines.append("| " + " | ".join(format_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True, help="PhysNet .npz with R, Z, N, E, F")
    parser.add_argument("--budget-s", type=float, default=240.0, help="training wall time of each trainer")
    parser.add_argument("--trainers", default="physnetjax,mace,apax", help=f"comma-separated subset of {TRAINERS}")
    parser.add_argument("--n-train", type=int, default=800)
    parser.add_argument("--n-valid", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and of every trainer")
    parser.add_argument("--physnetjax-python", default=sys.executable)
    parser.add_argument("--physnetjax-args", default="", help="extra options of python -m physnetjax.train")
    parser.add_argument("--mace-python", default="/work/peers/mace/bin/python")
    parser.add_argument("--mace-args", default="--model MACE --num_channels 32 --max_L 1 --correlation 3 "
                        "--r_max 5.0 --batch_size 10 --valid_batch_size 50",
                        help="model and batch options of mace_run_train")
    parser.add_argument("--apax-python", default="/work/peers/apax/bin/python")
    parser.add_argument("--apax-epochs", type=int, default=1000,
                        help="apax n_epochs (its linear learning-rate schedule runs over them)")
    parser.add_argument("--apax-batch-size", type=int, default=32,
                        help="apax batch size (default: its DataConfig default; its template has 4)")
    parser.add_argument("--eval-batch-size", type=int, default=32, help="molecules per inference call")
    parser.add_argument("--eval-repeats", type=int, default=3, help="timed inference passes")
    parser.add_argument("--work", type=Path, help="keep the runs in this new folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the JSON and markdown results")
    args = parser.parse_args(argv)
    args.trainers = [t.strip() for t in args.trainers.split(",") if t.strip()]
    unknown = sorted(set(args.trainers) - set(TRAINERS))
    if unknown or not args.trainers:
        parser.error(f"--trainers must be a comma-separated subset of {','.join(TRAINERS)}, received {unknown}")
    if args.budget_s <= 0:
        parser.error(f"--budget-s must be > 0, received {args.budget_s}")
    if not args.dataset.is_file():
        parser.error(f"--dataset {args.dataset} does not exist")
    for name, python, tool in (("mace", args.mace_python, "mace_run_train"), ("apax", args.apax_python, "apax")):
        if name in args.trainers and not (Path(python).parent / tool).is_file():
            parser.error(f"--trainers has {name} but {Path(python).parent / tool} does not exist: install it in "
                         f"its own venv (benchmarks/README.md) and pass --{name}-python, or leave {name} out")
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        parser.error(f"--work {args.work} is not empty: give a new folder for the runs")
    return args


def main(argv=None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logger.setLevel(logging.INFO)
    args = parse_args(argv)
    from physnetjax.data import load_dataset, save_split

    dataset = load_dataset([args.dataset])
    split = split_without_leak(dataset.R, args.n_train, args.n_valid, args.n_test, args.seed)
    test = dataset.subset(split["test"])
    with tempfile.TemporaryDirectory() as scratch:
        work = (args.work or Path(scratch)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        save_split(work / "split.npz", split)
        for name in ("train", "valid", "test"):
            write_extxyz(work / f"{name}.xyz", dataset, split[name])
        deadline = args.budget_s
        rows = []
        for name in args.trainers:
            if name == "physnetjax":
                result = train_physnetjax(args, work, test)
                deadline = max(deadline, result["process_wall_s"])
            elif name == "mace":
                result = train_mace(args, work, test, deadline)
            else:
                result = train_apax(args, work, test, split, deadline)
            rows.append(summarise(name, result, test, len(split["train"])))
            logger.info("%s: %s", name, {k: rows[-1].get(k) for k in ("epochs", "energy_mae_eV",
                                                                        "forces_mae_eV_per_A")})
        table = markdown(rows, args, split)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"bench_accuracy_{args.dataset.stem}_{args.budget_s:g}s"
    payload = {"benchmark": "bench_accuracy", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "machine": machine_info(), "load_average": os.getloadavg(),
        "command": shlex.join([sys.executable, *sys.argv]), "dataset": str(args.dataset.resolve()),
        "budget_s": args.budget_s, "peer_deadline_s": deadline, "seed": args.seed,
        "split": {name: split[name].tolist() for name in ("train", "valid", "test")}, "trainers": rows}
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    (args.out / f"{stem}.md").write_text(table)
    print(f"wrote {args.out / (stem + '.json')} and {stem}.md")


if __name__ == "__main__":
    main()
