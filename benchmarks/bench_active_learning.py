"""Active learning vs random frames on ethanol (GFN2-xTB), from the same 50 start frames (issue 16).

Three arms, all starting from the same random frames of the bundled ethanol GFN2-xTB set
and the same round-0 ensemble, each adding ``select`` labelled frames per round for
``rounds`` rounds and retraining with exactly the loop's trainer settings
(:func:`physnetjax.learn.loop.round_train_config`: a fixed number of epochs, started from
the previous round's checkpoint, so every number is independent of the machine's load):

* ``uncertain-diverse``: :func:`physnetjax.learn.run_learning`, MD with the current
  ensemble at every temperature, the frames of largest ensemble force spread that are
  ``min_rmsd`` apart, labelled with GFN2-xTB;
* ``random (model MD)``: the same loop and MD, frames chosen uniformly at random
  (``selection="random"``): the selection criterion alone differs;
* ``random (xTB MD)``: frames drawn at random from a pool of GFN2-xTB Langevin MD at the
  same temperatures (:func:`physnetjax.data.generate.generate`, seeds 200+), the
  conventional way of adding data without any model.

Test set: GFN2-xTB Langevin MD at each temperature (seeds 100+, never trained on), made
and used only after the arms have trained (the loop itself gets none); reported per
round and arm: training frames, test force and energy MAE of the member mean. Then each arm's final ensemble runs ``blow_up_runs`` Langevin runs of
``blow_up_steps`` × 0.5 fs at the hottest temperature, counting those that stop
(:class:`~physnetjax.md.driver.MDInstabilityError`: NaN or |F| > 100 eV/Å) and those that
reach an unphysical geometry (a broken bond or collapsed atoms, :func:`physical`) — a run
can dissociate the molecule without ever exceeding 100 eV/Å.

Round 0 is trained once (in the ``uncertain-diverse`` directory) and copied to the other
arms: it is deterministic, so this equals training it three times. Everything lives in
``--work DIR`` and a rerun with the same DIR resumes where it stopped; once round 0 is
done, the arms may run as separate processes (``--arms``, one each) on the same DIR, and
``--report-only`` then reports every arm's finished rounds.

Sizes: full = 50 start frames, 4 rounds × 50 frames, MD 2000 steps at 300/500/800 K,
K = 4, the trainer's default model (features 32), 40 epochs per round, test 100 frames
per temperature, blow-ups from 10 runs × 10 ps. ``--quick`` and ``--smoke`` shrink all
of these (``SIZES``); their numbers only show that the arms run.

Usage: python benchmarks/bench_active_learning.py [--quick | --smoke] [--out DIR] [--work DIR] [--arms NAME ...]
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import ase
import ase.io
import numpy as np

from common import parse_args, publish, table
from physnetjax.checkpoint import load_checkpoint
from physnetjax.data import bundled_dataset_path, concatenate, load_dataset
from physnetjax.data.generate import generate
from physnetjax.jsonlines import write_json
from physnetjax.learn import LearnConfig, run_learning
from physnetjax.learn.evaluate import test_errors
from physnetjax.learn.frames import save_frames
from physnetjax.learn.loop import round_train_config
from physnetjax.learn.state import read_state, round_dir, write_state
from physnetjax.md.driver import MDInstabilityError, simulate
from physnetjax.train import train

SIZES = {
    "full": dict(initial=50, rounds=4, select=50, md_steps=2000, temperatures=(300.0, 500.0, 800.0), ensemble=4,
                 features=32, epochs=40, test_per_temperature=100, blow_up_runs=10, blow_up_steps=20000),
    "quick": dict(initial=20, rounds=2, select=10, md_steps=400, temperatures=(300.0, 800.0), ensemble=2,
                  features=16, epochs=20, test_per_temperature=20, blow_up_runs=3, blow_up_steps=2000),
    "smoke": dict(initial=10, rounds=1, select=2, md_steps=20, temperatures=(300.0,), ensemble=2, features=8,
                  epochs=1, test_per_temperature=2, blow_up_runs=1, blow_up_steps=20),
}
ACTIVE, RANDOM_MODEL_MD, RANDOM_XTB_MD = "uncertain-diverse", "random (model MD)", "random (xTB MD)"
ARMS = {ACTIVE: "uncertain-diverse", RANDOM_MODEL_MD: "random-model-md", RANDOM_XTB_MD: "random-xtb-md"}
"""Arm name → its directory in the work folder."""
TEST_SEED, POOL_SEED = 100, 200


def reference_md(path: Path, temperatures, frames: int, seed: int) -> Path:
    """``frames`` GFN2-xTB Langevin MD frames split over ``temperatures`` (seed ``seed + k`` at the k-th), one .npz."""
    if path.exists():
        return path
    counts = [frames // len(temperatures) + (k < frames % len(temperatures)) for k in range(len(temperatures))]
    parts = [generate(frames=count, temperature=t, equilibration_steps=500, seed=seed + k)
             for k, (t, count) in enumerate(zip(temperatures, counts))]
    np.savez(path, **{key: np.concatenate([p[key] for p in parts]) for key in ("R", "Z", "N", "E", "F", "D", "Q")})
    return path


def learn_config(work: Path, selection: str, size: dict, rounds: int, out: str) -> LearnConfig:
    """The loop's settings of one arm (no test set inside the loop: it is evaluated afterwards, :func:`tested`)."""
    return LearnConfig(out=str(work / out), initial_frames=size["initial"], test_frames=0, rounds=rounds,
                       select=size["select"], selection=selection, temperatures=size["temperatures"],
                       md_steps=size["md_steps"], ensemble=size["ensemble"], features=size["features"],
                       epochs=size["epochs"])


def copy_round_zero(source: Path, config: LearnConfig) -> None:
    """Start ``config.out`` from the finished round 0 of the run in ``source`` (same data, seeds, model)."""
    target = Path(config.out)
    if read_state(target) is not None:
        return
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    shutil.copy2(source / "initial.npz", target / "initial.npz")
    shutil.copytree(round_dir(source, 0), round_dir(target, 0))
    write_state(target, config.to_dict(), read_state(source)["rounds"][:1])


def loop_arm(config: LearnConfig) -> list[dict]:
    """Rows (round, frames, MD max spread, label failures, time) of a :func:`run_learning` arm, run or resumed."""
    run_learning(config)
    return [row_of(summary) for summary in read_state(config.out)["rounds"][: config.rounds + 1]]


def row_of(summary: dict) -> dict:
    """The benchmark's row of one round summary of the loop (:mod:`physnetjax.learn.state`)."""
    return {"round": summary["round"], "frames": summary["frames"],
            "md_max_spread_eV_per_A": summary.get("md_max_spread_eV_per_A"),
            "label_failures": len(summary.get("label_failures", [])), "time_s": summary["time_s"]}


def tested(run_dir: Path, rows: list[dict], test: Path) -> list[dict]:
    """``rows`` with the test energy and force MAE of each round's ensemble (cached in ``run_dir/test_errors.json``)."""
    cache_path = run_dir / "test_errors.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    data = None
    for row in rows:
        key = str(row["round"])
        if key not in cache:
            data = data if data is not None else load_dataset(test)
            cache[key] = test_errors(round_dir(run_dir, row["round"]) / "train" / "best", data)
            write_json(cache_path, cache)
    return [{**row, "test_forces_mae": cache[str(row["round"])]["forces_mae"],
             "test_energy_mae": cache[str(row["round"])]["energy_mae"]} for row in rows]


def finished_rows(run_dir: Path) -> list[dict]:
    """Rows of the rounds an arm has finished so far (loop arms: ``state.json``; xTB MD arm: ``rounds.json``)."""
    done_path = run_dir / "rounds.json"
    if done_path.exists():
        return json.loads(done_path.read_text())
    state = read_state(run_dir)
    return [row_of(summary) for summary in state["rounds"]] if state is not None else []


def reference_md_arm(config: LearnConfig, pool_path: Path) -> list[dict]:
    """Round r adds the next ``select`` frames of a seeded permutation of the xTB MD pool; trained as the loop does."""
    run_dir = Path(config.out)
    done_path = run_dir / "rounds.json"
    rows = finished_rows(run_dir)[: config.rounds + 1]
    pool = load_dataset(pool_path)
    order = np.random.default_rng([config.seed, POOL_SEED]).permutation(len(pool))
    for index in range(len(rows), config.rounds + 1):
        start = time.monotonic()
        directory = round_dir(run_dir, index)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        previous = round_dir(run_dir, index - 1)
        new = pool.subset(np.sort(order[(index - 1) * config.select: index * config.select]))
        data = concatenate([load_dataset(previous / "data.npz"), new])
        save_frames(data, directory / "data.npz")
        train(round_train_config(config, directory, index, previous / "train" / "best"))
        rows.append({"round": index, "frames": len(data), "md_max_spread_eV_per_A": None, "label_failures": 0,
                     "time_s": time.monotonic() - start})
        write_json(done_path, rows)
    return rows


BROKEN_BOND_A, COLLAPSED_PAIR_A = 2.0, 0.5
"""A saved frame is unphysical for ethanol when some atom's nearest neighbour is farther than
BROKEN_BOND_A (a bond broke: thermal C–H/O–H stretches stay below ~1.4 Å) or two atoms are
closer than COLLAPSED_PAIR_A (Å)."""


def blow_ups(checkpoint, temperature: float, runs: int, steps: int) -> dict:
    """Of ``runs`` Langevin runs of ``steps`` × 0.5 fs at ``temperature``: how many stop on NaN or
    |F| > 100 eV/Å (``blow_ups``), and how many reach an unphysical frame before stopping or the
    end (``unphysical``, see BROKEN_BOND_A; every 10th step is checked).

    Run k starts from bundled frame k with momenta and noise of seed k.
    """
    model, params = load_checkpoint(checkpoint)
    data = load_dataset(bundled_dataset_path())
    stopped = unphysical = 0
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(runs):
            atoms = ase.Atoms(numbers=data.Z[seed, : data.N[seed]], positions=data.R[seed, : data.N[seed]])
            out = Path(scratch) / f"run-{seed}.xyz"
            try:
                simulate(model, params, atoms, ensemble="langevin", temperature_K=temperature, steps=steps,
                         out=str(out), save_every=10, chunk_frames=min(100, steps // 10), seed=seed)
            except MDInstabilityError:
                stopped += 1
            frames = ase.io.read(out, ":") if out.exists() else []
            unphysical += any(not physical(frame.positions) for frame in frames)
    return {"blow_ups": stopped, "unphysical": unphysical}


def physical(positions: np.ndarray) -> bool:
    """False when a bond is broken or two atoms collapsed (BROKEN_BOND_A, COLLAPSED_PAIR_A)."""
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    nearest = distances.min(axis=1)
    return bool(nearest.max() <= BROKEN_BOND_A and nearest.min() >= COLLAPSED_PAIR_A)


def plot_curves(arms: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, arm in arms.items():
        frames = [row["frames"] for row in arm["rounds"]]
        axes[0].plot(frames, [row["test_forces_mae"] for row in arm["rounds"]], "o-", label=name)
        axes[1].plot(frames, [row["test_energy_mae"] for row in arm["rounds"]], "o-", label=name)
    axes[0].set_ylabel("test force MAE (eV/Å)")
    axes[1].set_ylabel("test energy MAE (eV)")
    for axis in axes:
        axis.set_xlabel("training frames")
        axis.set_yscale("log")
    axes[0].legend(fontsize=8)
    figure.suptitle("ethanol, GFN2-xTB labels; test: xTB MD at 300/500/800 K", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    def extra(parser):
        parser.add_argument("--work", type=Path, default=None,
                            help="folder of the runs (default: a new temporary one); reuse to resume")
        parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS),
                            help="arms to run and report (default: all three)")
        parser.add_argument("--rounds", type=int, default=None,
                            help="override the size's number of rounds (the last one gives the MD-tested ensemble)")
        parser.add_argument("--blow-up-runs", type=int, default=None, help="override the size's number of runs")
        parser.add_argument("--blow-up-ps", type=float, default=None, help="override the size's length of each run, ps")
        parser.add_argument("--report-only", action="store_true",
                            help="train nothing: report the rounds (and blow-up counts) already finished in --work")

    args = parse_args(__doc__, extra=extra)
    logging.basicConfig(level=logging.WARNING)
    size = dict(SIZES[args.mode])
    if args.rounds is not None:
        size["rounds"] = args.rounds
    if args.blow_up_runs is not None:
        size["blow_up_runs"] = args.blow_up_runs
    if args.blow_up_ps is not None:
        size["blow_up_steps"] = round(args.blow_up_ps / 0.5e-3)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-al-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    configs = {name: learn_config(work, "random" if name == RANDOM_MODEL_MD else "uncertain-diverse", size,
                                  size["rounds"], directory) for name, directory in ARMS.items()}
    if not args.report_only:
        run_learning(learn_config(work, "uncertain-diverse", size, 0, ARMS[ACTIVE]))
        for name in (RANDOM_MODEL_MD, RANDOM_XTB_MD):
            copy_round_zero(work / ARMS[ACTIVE], configs[name])
    arms = {}
    for name in args.arms:
        config = configs[name]
        arm_start = time.monotonic()
        blow_up_path = (Path(config.out) /
                        f"blow_ups-round-{size['rounds']}-{size['blow_up_runs']}x{size['blow_up_steps']}.json")
        if args.report_only:
            rounds = finished_rows(Path(config.out))[: size["rounds"] + 1]
        elif name == RANDOM_XTB_MD:
            pool = reference_md(work / "pool.npz", size["temperatures"], size["rounds"] * size["select"], POOL_SEED)
            rounds = reference_md_arm(config, pool)
        else:
            rounds = loop_arm(config)
        if not args.report_only and not blow_up_path.exists():
            counts = blow_ups(round_dir(config.out, size["rounds"]) / "train" / "best", max(size["temperatures"]),
                              size["blow_up_runs"], size["blow_up_steps"])
            write_json(blow_up_path, {"runs": size["blow_up_runs"], "steps": size["blow_up_steps"], **counts})
        arms[name] = {"rounds": rounds,
                      "blow_ups": json.loads(blow_up_path.read_text()) if blow_up_path.exists() else None,
                      "time_s_this_invocation": time.monotonic() - arm_start}
    test = reference_md(work / "test.npz", size["temperatures"], size["test_per_temperature"] * len(size["temperatures"]),
                        TEST_SEED)
    for name in args.arms:
        arms[name]["rounds"] = tested(Path(configs[name].out), arms[name]["rounds"], test)
    rows = [[name, row["round"], row["frames"], row["test_forces_mae"], row["test_energy_mae"],
             row["md_max_spread_eV_per_A"]] for name, arm in arms.items() for row in arm["rounds"]]
    tables = [
        table("Active learning vs random frames (ethanol, GFN2-xTB labels)", "test MAE of the member mean",
              ["arm", "round", "frames", "test F MAE (eV/Å)", "test E MAE (eV)", "MD max spread (eV/Å)"], rows),
        table(f"MD blow-ups of the final ensembles at {max(size['temperatures']):g} K", "runs stopped",
              ["arm", "runs", "ps each", "blow-ups (NaN, |F| > 100 eV/Å)",
               f"unphysical (bond > {BROKEN_BOND_A:g} Å or pair < {COLLAPSED_PAIR_A:g} Å)"],
              [[name, "not run", "–", "–", "–"] if arm["blow_ups"] is None else
               [name, arm["blow_ups"]["runs"], arm["blow_ups"]["steps"] * 0.5e-3, arm["blow_ups"]["blow_ups"],
                arm["blow_ups"]["unphysical"]] for name, arm in arms.items()]),
    ]
    sizes = {k: list(v) if isinstance(v, tuple) else v for k, v in size.items()}
    publish("bench_active_learning", args, tables,
            {"sizes": sizes, "arms": arms, "total_s_this_invocation": time.monotonic() - start, "work": str(work)},
            plots={"bench_active_learning.png": lambda path: plot_curves(arms, path)})


if __name__ == "__main__":
    main()
