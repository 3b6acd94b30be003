"""Cost of the per-atom energies: one compiled energy+forces call with and without the ``energies`` output.

The split E = Σ_i E_i is free for the network and the Coulomb/ZBL pair terms (their per-atom sums are by-products of
the energy), but a D3(BJ) model recomputes its two-body pair energies in a separate forward pass (the energy's own
path has a hand-written derivative), and with ATM each triangle's energy too (:mod:`physnetjax.model`). So the
calculator computes the split only when ASE asks for ``energies``, and ``eval`` only with ``--write-predictions``.

Models (float32, randomly initialised, features 16, max_degree 1, two iterations, cutoff 5 Å: the cost does not
depend on the fit): *plain*, *D3* (pbe0, two-body, 15 Å) and *D3 + ATM*; structures: ethanol (9 atoms, the MD
case) and a rattled box of 4×4×4 water molecules (192 atoms, periodic), the box not with ATM: its 15 Å triangles
number 1.9e8 and one call takes minutes (benchmarks/README.md). What is timed: ``apply_fitting`` (what the
calculator calls) on a batch built beforehand, blocked until ready, with ``energies=False`` and ``energies=True``,
round robin (:func:`common.interleaved_times`); the table gives medians per call of wall and process CPU time and
their ratio. Writes ``bench_atomic_energies.json``.

    python benchmarks/bench_atomic_energies.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import os
import warnings

import jax
from ase.build import molecule
from calculator_overhead import water_box
from common import interleaved_times, medians_per_call, parse_args, publish_timed_table

from physnetjax import PhysNet, init_params
from physnetjax.calculator import PhysNetCalculator
from physnetjax.predict import apply_fitting

MODELS = {
    "plain": {},
    "D3": dict(dispersion="d3bj", dispersion_three_body=False),
    "D3 + ATM": dict(dispersion="d3bj", dispersion_three_body=True),
}
"""Model settings beyond the shared ones (module docstring)."""


def calls_of(model, atoms, repeat: int) -> dict:
    """{"without": ..., "with": ...}: functions making ``repeat`` compiled calls each, without and with the split."""
    calc = PhysNetCalculator(model, init_params(model, 0))
    batch = calc.build_batch(atoms)[0]

    def call(energies: bool):
        def run():
            for _ in range(repeat):
                jax.block_until_ready(apply_fitting(calc._network, calc.params, batch, energies=energies))
        return run

    return {"without": call(False), "with": call(True)}


def main() -> None:
    args = parse_args(__doc__)
    rounds = {"full": 20, "quick": 8, "smoke": 2}[args.mode]
    repeat = {"full": 20, "quick": 10, "smoke": 2}[args.mode]
    structures = {"ethanol": molecule("CH3CH2OH")}
    if args.mode != "smoke":
        structures["water box, periodic"] = water_box(4)
    warnings.simplefilter("ignore")  # the random models' training-record warnings are not what is measured
    load_before = os.getloadavg()
    rows, data = [], {}
    for model_name, settings in MODELS.items():
        model = PhysNet(features=16, max_degree=1, num_iterations=2, num_basis_functions=8, cutoff=5.0,
                        max_atomic_number=8, n_res=1, **settings)
        for name, atoms in structures.items():
            if settings.get("dispersion_three_body") and atoms.pbc.any():
                continue
            times = interleaved_times(calls_of(model, atoms, repeat), rounds)
            per_call = medians_per_call(times, repeat, 1e3)
            data[f"{model_name} / {name}"] = {"atoms": len(atoms), "calls_per_sample": repeat, "rounds": rounds,
                                              "times_s": times, "median_ms_per_call": per_call}
            without, with_split = per_call["without"], per_call["with"]
            rows.append([model_name, name, len(atoms), without["wall_s"], with_split["wall_s"],
                         with_split["wall_s"] / without["wall_s"], without["cpu_s"], with_split["cpu_s"],
                         with_split["cpu_s"] / without["cpu_s"]])
    publish_timed_table(
        "bench_atomic_energies", args, f"energy+forces with and without the per-atom energies, ms per compiled call "
        f"(median of {rounds} samples of {repeat} calls", "wall (perf_counter) and process CPU (process_time) per "
        "call; ratio = with / without",
        ["model", "system", "atoms", "wall without", "wall with", "ratio", "CPU without", "CPU with", "CPU ratio"],
        rows, data, load_before)


if __name__ == "__main__":
    main()
