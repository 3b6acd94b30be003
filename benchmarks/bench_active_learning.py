"""Active learning vs random frames on ethanol (GFN2-xTB), from the same start (issue 16).

Both arms run :func:`physnetjax.learn.run_learning` from the same random frames of the
bundled ethanol GFN2-xTB set with the same settings, seeds and MD; they differ only in
which MD frames are labelled each round: ``uncertain-diverse`` (the loop's selection,
largest ensemble force spread first, ``min_rmsd`` apart) or ``random`` (uniformly among
the same kind of MD frames). The test set is independent: GFN2-xTB Langevin MD
(:func:`physnetjax.data.generate.generate`) at each temperature. Reported per round and
arm: training frames and test force MAE; then, for each arm's final ensemble, the
number of Langevin MD runs at the hottest temperature that blow up
(:class:`~physnetjax.md.driver.MDInstabilityError`: NaN or |F| > 100 eV/Å).

Sizes: full = 50 start frames, 4 rounds × 50 frames, MD 2000 steps at 300/500/800 K,
K = 4, the trainer's default model (features 32) and 40 epochs per round; test 100
frames per temperature; blow-ups from 10 runs × 10 ps. ``--quick`` and ``--smoke``
shrink all of these (see ``SIZES``); their numbers only show that the arms run.

Usage: python benchmarks/bench_active_learning.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import ase
import numpy as np

from common import parse_args, publish, table
from physnetjax.checkpoint import load_checkpoint
from physnetjax.data import bundled_dataset_path, load_dataset
from physnetjax.data.generate import generate
from physnetjax.learn import LearnConfig, run_learning
from physnetjax.learn.state import round_dir
from physnetjax.md.driver import MDInstabilityError, simulate

SIZES = {
    "full": dict(initial=50, rounds=4, select=50, md_steps=2000, temperatures=(300.0, 500.0, 800.0), ensemble=4,
                 features=32, epochs=40, test_per_temperature=100, blow_up_runs=10, blow_up_steps=20000),
    "quick": dict(initial=20, rounds=2, select=10, md_steps=400, temperatures=(300.0, 800.0), ensemble=2,
                  features=16, epochs=20, test_per_temperature=20, blow_up_runs=3, blow_up_steps=2000),
    "smoke": dict(initial=10, rounds=1, select=2, md_steps=20, temperatures=(300.0,), ensemble=2, features=8,
                  epochs=1, test_per_temperature=2, blow_up_runs=1, blow_up_steps=20),
}


def test_set(path: Path, temperatures, frames: int) -> Path:
    """GFN2-xTB Langevin MD frames at each temperature, joined into one .npz at ``path``."""
    parts = [generate(frames=frames, temperature=t, equilibration_steps=500, seed=100 + k)
             for k, t in enumerate(temperatures)]
    np.savez(path, **{key: np.concatenate([p[key] for p in parts]) for key in ("R", "Z", "N", "E", "F", "D", "Q")})
    return path


def blow_ups(checkpoint, temperature: float, runs: int, steps: int) -> int:
    """How many of ``runs`` Langevin runs of ``steps`` × 0.5 fs at ``temperature`` stop on NaN or |F| > 100 eV/Å."""
    model, params, _ = load_checkpoint(checkpoint)
    data = load_dataset(bundled_dataset_path())
    count = 0
    for seed in range(runs):
        atoms = ase.Atoms(numbers=data.Z[seed, : data.N[seed]], positions=data.R[seed, : data.N[seed]])
        try:
            simulate(model, params, atoms, ensemble="langevin", temperature_K=temperature, steps=steps,
                     save_every=10, chunk_frames=min(100, steps // 10), seed=seed)
        except MDInstabilityError:
            count += 1
    return count


def main() -> None:
    args = parse_args(__doc__)
    logging.basicConfig(level=logging.WARNING)
    size = SIZES[args.mode]
    work = Path(tempfile.mkdtemp(prefix="bench-al-"))
    test = test_set(work / "test.npz", size["temperatures"], size["test_per_temperature"])
    arms, rows = {}, []
    for selection in ("uncertain-diverse", "random"):
        start = time.perf_counter()
        config = LearnConfig(out=str(work / selection), initial_frames=size["initial"], test=str(test),
                             rounds=size["rounds"], select=size["select"], selection=selection,
                             temperatures=size["temperatures"], md_steps=size["md_steps"], ensemble=size["ensemble"],
                             features=size["features"], epochs=size["epochs"])
        report = run_learning(config)
        final = round_dir(work / selection, size["rounds"]) / "train" / "best"
        arms[selection] = {"rounds": report["rounds"], "time_s": time.perf_counter() - start,
                           "blow_ups": blow_ups(final, max(size["temperatures"]), size["blow_up_runs"],
                                                size["blow_up_steps"])}
        for row in report["rounds"]:
            rows.append([selection, row["round"], row["frames"], row["test_forces_mae"], row["md_max_spread_eV_per_A"]])
    tables = [
        table("Active learning vs random frames (ethanol, GFN2-xTB labels)", "test force MAE, eV/Å",
              ["selection", "round", "frames", "test F MAE", "MD max spread"], rows),
        table(f"MD blow-ups of the final ensembles at {max(size['temperatures']):g} K", "runs stopped",
              ["selection", "runs", "ps each", "blow-ups"],
              [[name, size["blow_up_runs"], size["blow_up_steps"] * 0.5e-3, arm["blow_ups"]]
               for name, arm in arms.items()]),
    ]
    publish("bench_active_learning", args, tables, {"sizes": {k: list(v) if isinstance(v, tuple) else v
                                                              for k, v in size.items()}, "arms": arms})


if __name__ == "__main__":
    main()
