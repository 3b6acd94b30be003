"""The library's compilation (YNNPACK fusions off) against XLA's defaults, for inference and MD.

:func:`physnetjax.compilation.jit` compiles every model evaluation of the library
with XLA:CPU's YNNPACK library fusions off (the training step since 2026-12-01:
``bench_train_step.py``; predict, the calculator, MD, spectra, ``check`` and ``eval``
since 2026-12-02). This script times the same functions compiled both ways in one
process (``common.compiled_with``), alternately, so load drift hits both alike:

* energy and forces of 1, 16 and 64 ethanol molecules by one jitted ``apply_batch``
  (what ``predict``, the calculator and ``eval`` run), for one model and for a K = 4
  ensemble (:class:`~physnetjax.ensemble.PhysNetEnsemble`, members mapped);
  :func:`common.interleaved_times` rounds, median wall and process CPU time per call;
* NVE MD by :func:`physnetjax.md.driver.simulate` (float32, 0.5 fs) of ethanol
  (9 atoms), the A–T base pair (30 atoms) and a periodic ethanol box of ≥ 1000 atoms
  (the systems of ``bench_md.py``): the driver's steps per second, compile excluded,
  runs alternating between the two settings.

Model: the shipped ethanol example (speed does not depend on the fit). The outputs of
the two compilations are compared too (largest force difference, float32).

Writes ``bench_compilation.json``.

Usage: python benchmarks/bench_compilation.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import logging

import ase.io
import jax
import numpy as np

from bench_md import systems
from common import compiled_with, interleaved_times, parse_args, publish, table
from physnetjax.checkpoint import load_checkpoint
from physnetjax.compilation import compiler_options, jit
from physnetjax.ensemble import PhysNetEnsemble, stack_members
from physnetjax.md.driver import simulate
from physnetjax.neighbors import apply_batch, batch_molecules, model_pair_cutoff
from physnetjax.pretrained import example_geometry_path, example_model_path

logger = logging.getLogger("bench_compilation")

PLAN = {  # mode: (molecule counts, inference rounds, MD systems, MD steps (molecule, box), MD runs per setting)
    "full": ((1, 16, 64), 15, ("ethanol", "basepair", "periodic_box"), (4000, 200), 3),
    "quick": ((1, 16), 7, ("ethanol", "periodic_box"), (1000, 50), 2),
    "smoke": ((1, 2), 2, ("ethanol",), (20, 20), 1),
}
SETTINGS = ("XLA defaults", "library (YNNPACK off)")
MEMBERS = 4


def inference(model, params, molecules: int, rounds: int) -> dict:
    """Per model kind and setting: median wall/CPU ms of energy+forces of ``molecules`` ethanol copies."""
    ethanol = ase.io.read(example_geometry_path())
    rng = np.random.default_rng(molecules)
    positions = [ethanol.positions + rng.normal(scale=0.05, size=ethanol.positions.shape) for _ in range(molecules)]
    batch = batch_molecules([ethanol.numbers] * molecules, positions, model.cutoff,
                            pair_cutoff=model_pair_cutoff(model), dtype=np.float32)
    ensemble = PhysNetEnsemble(member=model, size=MEMBERS)
    kinds = {"one model": (model, params),
             f"K = {MEMBERS} (mapped)": (ensemble, stack_members([params] * MEMBERS))}
    calls, forces = {}, {}
    for kind, (network, weights) in kinds.items():
        for setting, options in zip(SETTINGS, (None, compiler_options())):
            with compiled_with(options):
                fn = jit(lambda p, b, network=network: apply_batch(network, p, b)["forces"])
            forces[kind, setting] = np.asarray(fn(weights, batch))
            calls[f"{kind} | {setting}"] = lambda fn=fn, weights=weights: jax.block_until_ready(fn(weights, batch))
    times = interleaved_times(calls, rounds)
    rows = {}
    for kind in kinds:
        per_setting = {s: {"wall_ms": 1e3 * float(np.median(times[f"{kind} | {s}"]["wall_s"])),
                           "cpu_ms": 1e3 * float(np.median(times[f"{kind} | {s}"]["cpu_s"]))} for s in SETTINGS}
        rows[kind] = {"settings": per_setting,
                      "max_force_difference": float(np.abs(forces[kind, SETTINGS[0]] - forces[kind, SETTINGS[1]]).max())}
    return rows


def md_rates(model, params, atoms, steps: int, runs: int) -> dict:
    """Steps per second (compile excluded) of ``runs`` NVE runs per setting, alternating."""
    rates = {s: [] for s in SETTINGS}
    for _ in range(runs):
        for setting, options in zip(SETTINGS, (None, compiler_options())):
            with compiled_with(options):
                report = simulate(model, params, atoms, steps=steps, save_every=10, chunk_frames=max(1, steps // 10),
                                  dtype="float32", temperature_K=300.0, max_force=1e4)
            rates[setting].append(report.steps_per_second)
    return rates


def main() -> None:
    args = parse_args(__doc__)
    logging.basicConfig(level=logging.INFO)
    counts, rounds, md_systems, (molecule_steps, box_steps), runs = PLAN[args.mode]
    model, params, _ = load_checkpoint(example_model_path())
    if compiler_options() is None:
        logger.warning("this backend/XLA compiles with plain jax.jit: both settings are the same")

    inference_rows, inference_data = [], {}
    for molecules in counts:
        result = inference(model, params, molecules, rounds)
        inference_data[molecules] = result
        for kind, r in result.items():
            default, ours = (r["settings"][s] for s in SETTINGS)
            inference_rows.append([molecules, kind, default["wall_ms"], ours["wall_ms"],
                                   default["wall_ms"] / ours["wall_ms"], default["cpu_ms"] / ours["cpu_ms"],
                                   r["max_force_difference"]])
            logger.info("%d molecules, %s: %.3f -> %.3f ms (x%.2f)", molecules, kind, default["wall_ms"],
                        ours["wall_ms"], default["wall_ms"] / ours["wall_ms"])

    md_rows, md_data = [], {}
    chosen = systems(1000)
    for name in md_systems:
        atoms = chosen[name]
        steps = box_steps if len(atoms) >= 1000 else molecule_steps
        rates = md_rates(model, params, atoms, steps, runs)
        md_data[name] = {"atoms": len(atoms), "steps": steps, "steps_per_second": rates}
        default, ours = (float(np.median(rates[s])) for s in SETTINGS)
        md_rows.append([name, len(atoms), steps, default, ours, ours / default, runs])
        logger.info("%s (%d atoms): %.1f -> %.1f steps/s (x%.2f)", name, len(atoms), default, ours, ours / default)

    tables = [
        table("Energy and forces, one jitted call: XLA defaults vs the library's compilation",
              f"median of {rounds} interleaved rounds, compile excluded; speed-up = defaults / library "
              "(wall, and process CPU time); force difference: largest |ΔF| (eV/Å, float32) between the two",
              ["molecules", "model", "defaults wall ms", "library wall ms", "speed-up (wall)", "speed-up (CPU)",
               "max |ΔF|"], inference_rows),
        table("NVE MD (float32, 0.5 fs): XLA defaults vs the library's compilation",
              "steps/s of the MD driver, compile excluded, median of runs alternating the two settings",
              ["system", "atoms", "steps", "defaults steps/s", "library steps/s", "speed-up", "runs"], md_rows),
    ]
    publish("bench_compilation", args, tables, {"options": compiler_options(), "inference": inference_data,
                                                "md": md_data})


if __name__ == "__main__":
    main()
