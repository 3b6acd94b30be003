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
  (9 atoms), README's periodic box of 8 ethanol molecules (72 atoms) and a periodic
  ethanol box of ≥ 1000 atoms (``bench_md.py``'s; its base pair is left out, the
  ethanol model's NVE of it breaks up within 250 steps): the driver's steps per
  second, compile excluded, runs alternating between the two settings. The boxes start
  far from the model's equilibrium (the large one heats to ~2300 K in 200 steps, in
  both settings alike), so energy drift is logged as a warning instead of stopping the
  run: only the speed is measured here. The driver compiles systems of fewer than
  ``SYSTEM_MIN_ATOMS`` atoms (ethanol here) with plain ``jax.jit`` in both arms;
* the NVE loop itself (``physnet_potential`` + ``nve`` + ``run``, float32, the driver's
  pieces) of isolated molecules: ethanol (9 atoms), aspirin (21 atoms, first frame of
  ``--aspirin`` when given) and clusters of the box's first 4 and 8 molecules (36 and
  72 atoms), with the model's edges as the constant all-pairs set and as the in-jit
  ``"dense"`` neighbor list, each compiled with plain ``jax.jit`` and with the
  library's options, interleaved rounds: where ``SYSTEM_MIN_ATOMS`` comes from.

Model: the shipped ethanol example (speed does not depend on the fit). The outputs of
the two compilations are compared too (largest force difference, float32).

Writes ``bench_compilation.json``.

Usage: python benchmarks/bench_compilation.py [--quick | --smoke] [--out DIR] [--aspirin NPZ]
"""

from __future__ import annotations

import logging

import ase
import ase.io
import jax
import jax.numpy as jnp
import numpy as np

from bench_md import systems
from common import compiled_with, interleaved_times, parse_args, publish, table
from physnetjax.checkpoint import load_checkpoint
from physnetjax.compilation import SYSTEM_MIN_ATOMS, compiler_options, jit
from physnetjax.ensemble import PhysNetEnsemble, stack_members
from physnetjax.calculator import cast_params
from physnetjax.md import maxwell_boltzmann_momenta, nve, run
from physnetjax.md.driver import simulate
from physnetjax.md.potential import physnet_potential
from physnetjax.neighbors import apply_batch, batch_molecules, model_pair_cutoff
from physnetjax.pretrained import example_geometry_path, example_model_path

logger = logging.getLogger("bench_compilation")

PLAN = {  # mode: (molecule counts, inference rounds, MD systems, MD steps (molecule, box), MD runs per setting,
    #        NVE-loop steps per call, NVE-loop rounds)
    "full": ((1, 16, 64), 15, ("ethanol", "box of 8 ethanol", "periodic_box"), (4000, 200), 3, 1000, 7),
    "quick": ((1, 16), 7, ("ethanol", "box of 8 ethanol", "periodic_box"), (1000, 50), 2, 500, 3),
    "smoke": ((1, 2), 2, ("ethanol",), (20, 20), 1, 20, 1),
}
SETTINGS = ("XLA defaults", "library (YNNPACK off)")
MEMBERS = 4


def ethanol_box() -> ase.Atoms:
    """README's periodic box: 8 randomly rotated ethanol molecules on a 5 Å grid in a 10 Å cube (72 atoms)."""
    molecule = ase.io.read(example_geometry_path())
    rng = np.random.default_rng(0)
    box = ase.Atoms(cell=np.eye(3) * 10.0, pbc=True)
    for corner in np.stack(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij"), -1).reshape(-1, 3):
        copy = molecule.copy()
        copy.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COM")
        copy.translate(2.5 + 5.0 * corner - copy.get_center_of_mass())
        box += copy
    return box


def cluster(box: ase.Atoms, molecules: int) -> ase.Atoms:
    """The first ``molecules`` ethanol molecules of :func:`ethanol_box`, isolated (no cell)."""
    atoms = box[: 9 * molecules].copy()
    atoms.pbc = False
    atoms.cell = None
    return atoms


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
                                  dtype="float32", temperature_K=300.0, max_force=1e4, on_energy_drift="warn")
            rates[setting].append(report.steps_per_second)
    return rates


def nve_loop_rates(model, params, molecules: dict, steps: int, rounds: int) -> dict:
    """Per molecule and edge set: steps/s of ``steps`` NVE steps compiled with plain jax.jit and with the options."""
    params32 = cast_params(params, jnp.float32)
    calls = {}
    for name, atoms in molecules.items():
        positions = jnp.asarray(atoms.positions, jnp.float32)
        masses = jnp.asarray(atoms.get_masses(), jnp.float32)
        momenta = maxwell_boltzmann_momenta(jax.random.PRNGKey(0), masses, 300.0)
        for method in ("all_pairs", "dense"):
            potential = physnet_potential(model, params32, atoms.numbers, method=method)
            nbrs = potential.allocate(positions)
            init_fn, apply_fn = nve(potential.energy_force, 0.5, neighbor_update=potential.update)
            state = init_fn(positions, momenta, masses, nbrs)
            for setting, options in zip(SETTINGS, (None, compiler_options())):
                kwargs = {} if options is None else {"compiler_options": options}
                loop = jax.jit(lambda s, apply_fn=apply_fn: run(apply_fn, s, 1, steps)[0], **kwargs)
                calls[f"{name} | {method} | {setting}"] = lambda loop=loop, state=state: jax.block_until_ready(
                    loop(state).positions)
    times = interleaved_times(calls, rounds)
    return {key: steps / float(np.median(t["wall_s"])) for key, t in times.items()}


def main() -> None:
    args = parse_args(__doc__, lambda p: p.add_argument("--aspirin", help="aspirin data set (.npz); first frame"))
    logging.basicConfig(level=logging.INFO)
    counts, rounds, md_systems, (molecule_steps, box_steps), runs, loop_steps, loop_rounds = PLAN[args.mode]
    model, params = load_checkpoint(example_model_path())
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
    chosen = {**systems(1000), "box of 8 ethanol": ethanol_box()}
    for name in md_systems:
        atoms = chosen[name]
        steps = box_steps if len(atoms) >= 1000 else molecule_steps
        rates = md_rates(model, params, atoms, steps, runs)
        md_data[name] = {"atoms": len(atoms), "steps": steps, "steps_per_second": rates}
        default, ours = (float(np.median(rates[s])) for s in SETTINGS)
        library = "plain jax.jit" if len(atoms) < SYSTEM_MIN_ATOMS else "options"
        md_rows.append([name, len(atoms), library, steps, default, ours, ours / default, runs])
        logger.info("%s (%d atoms): %.1f -> %.1f steps/s (x%.2f)", name, len(atoms), default, ours, ours / default)

    box = chosen["box of 8 ethanol"]
    molecules = {"ethanol": chosen["ethanol"]}
    if args.mode != "smoke":
        if args.aspirin:
            data = np.load(args.aspirin)
            count = int(data["N"][0])
            molecules["aspirin"] = ase.Atoms(numbers=data["Z"][0][:count], positions=data["R"][0][:count])
        molecules.update({"4 ethanol (cluster)": cluster(box, 4), "8 ethanol (cluster)": cluster(box, 8)})
    loop_rates = nve_loop_rates(model, params, molecules, loop_steps, loop_rounds)
    loop_rows = []
    for name, atoms in molecules.items():
        for method in ("all_pairs", "dense"):
            default, ours = (loop_rates[f"{name} | {method} | {s}"] for s in SETTINGS)
            loop_rows.append([name, len(atoms), method, default, ours, ours / default])
            logger.info("NVE loop %s (%s): %.0f -> %.0f steps/s (x%.2f)", name, method, default, ours, ours / default)

    tables = [
        table("Energy and forces, one jitted call: XLA defaults vs the library's compilation",
              f"median of {rounds} interleaved rounds, compile excluded; speed-up = defaults / library "
              "(wall, and process CPU time); force difference: largest |ΔF| (eV/Å, float32) between the two",
              ["molecules", "model", "defaults wall ms", "library wall ms", "speed-up (wall)", "speed-up (CPU)",
               "max |ΔF|"], inference_rows),
        table("NVE MD (float32, 0.5 fs): XLA defaults vs the library's compilation",
              "steps/s of the MD driver, compile excluded, median of runs alternating the two settings",
              ["system", "atoms", "library compiles with", "steps", "defaults steps/s", "library steps/s", "speed-up",
               "runs"], md_rows),
        table("The NVE loop of one molecule: plain jax.jit vs the library's options, by edge set",
              f"steps/s of {loop_steps} float32 NVE steps per call (0.5 fs), median of {loop_rounds} interleaved "
              "rounds, compile excluded; all_pairs: the constant edge set the driver uses for small molecules, "
              "dense: the in-jit neighbor list",
              ["molecule", "atoms", "edge set", "plain jit steps/s", "library options steps/s", "speed-up"],
              loop_rows),
    ]
    publish("bench_compilation", args, tables, {"options": compiler_options(), "inference": inference_data,
                                                "md": md_data, "nve_loop_steps_per_second": loop_rates})


if __name__ == "__main__":
    main()
