"""Host overhead of the ASE calculator: one energy+forces call of :class:`PhysNetCalculator` vs its compiled model.

Structures: ethanol (9 atoms, the shipped example model), a rattled 2×2×2 fcc Cu cell (32 atoms, periodic) and a
rattled box of 4×4×4 water molecules (192 atoms, periodic), the last two with a small randomly initialised model
(features 16, max_degree 1, two iterations, cutoff 5 Å): the host work does not depend on the fit. Float32.

What is timed: *calculator*: ``atoms.get_forces()`` after a new geometry (two geometries 1e-3 Å apart taken in
turn, so nothing is served from the cache), as an ASE optimiser or MD step pays it (ASE's own change check, input
checks, neighbor lists, batch assembly, the compiled call, results back to the host); *model*: the same compiled
function (:func:`physnetjax.predict.apply_fitting`) on a batch the calculator built beforehand, blocked until
ready. The two run round robin (:func:`common.interleaved_times`), ``--calls`` calls per timed sample; the table
gives the medians per call of wall time and of process CPU time (both cores' work: steadier than wall time on a
shared machine; above wall time where XLA runs on both cores), and their difference, the host overhead. The JSON
records the machine's load average before and after, and which physnetjax was imported (to time two versions one
after the other, run the script with each on ``PYTHONPATH``). Writes ``calculator_overhead.json``.

    python benchmarks/calculator_overhead.py [--quick | --smoke] [--out DIR] [--calls N] [--tag NAME]
"""

from __future__ import annotations

import os
import statistics
import warnings

import ase
import jax
import numpy as np
from ase.build import bulk, molecule
from common import interleaved_times, parse_args, publish, table

import physnetjax
from physnetjax import PhysNet, init_params
from physnetjax.calculator import PhysNetCalculator
from physnetjax.predict import apply_fitting
from physnetjax.pretrained import example_model_path


def water_box(per_side: int, spacing: float = 3.1) -> ase.Atoms:
    """``per_side``³ water molecules on a rattled grid of ``spacing`` Å, periodic (≈ 1 g/cm³ at 3.1 Å)."""
    rng = np.random.default_rng(0)
    water = molecule("H2O")
    box = ase.Atoms(cell=np.eye(3) * per_side * spacing, pbc=True)
    for index in np.ndindex(per_side, per_side, per_side):
        one = water.copy()
        one.positions += (np.array(index) + 0.5) * spacing + rng.normal(scale=0.05, size=3)
        box += one
    return box


def copper_cell() -> ase.Atoms:
    cell = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    cell.rattle(0.05, seed=0)
    return cell


def systems(mode: str) -> dict:
    """{name: (atoms, calculator)}; ``--smoke``: ethanol only."""
    found = {"ethanol": (molecule("CH3CH2OH"), PhysNetCalculator(checkpoint=example_model_path("ethanol")))}
    if mode == "smoke":
        return found
    model = PhysNet(features=16, max_degree=1, num_iterations=2, num_basis_functions=8, cutoff=5.0,
                    max_atomic_number=29, n_res=1)
    params = init_params(model, 0)
    for name, atoms in (("Cu fcc, periodic", copper_cell()), ("water box, periodic", water_box(4))):
        found[name] = (atoms, PhysNetCalculator(model, params))
    return found


def calls_of(atoms: ase.Atoms, calc: PhysNetCalculator, repeat: int) -> dict:
    """{"calculator": ..., "model": ...}: functions making ``repeat`` calls each (see the module docstring)."""
    atoms.calc = calc
    geometries = [atoms.positions.copy(), atoms.positions + 1e-3]
    batch = calc.build_batch(atoms)[0]

    def calculator():
        for k in range(repeat):
            atoms.positions = geometries[k % 2]
            atoms.get_forces()

    def model():
        for _ in range(repeat):
            jax.block_until_ready(apply_fitting(calc._network, calc.params, batch, energies=False))

    return {"calculator": calculator, "model": model}


def main() -> None:
    args = parse_args(__doc__, lambda parser: (
        parser.add_argument("--calls", type=int, default=None, help="calls per timed sample"),
        parser.add_argument("--tag", default="", help="label of this run in the table (e.g. a branch)")))
    rounds = {"full": 30, "quick": 10, "smoke": 2}[args.mode]
    repeat = args.calls or {"full": 20, "quick": 10, "smoke": 2}[args.mode]
    warnings.simplefilter("ignore")  # the random models' training-record warnings are not what is measured
    load_before = os.getloadavg()
    rows, data = [], {}
    for name, (atoms, calc) in systems(args.mode).items():
        times = interleaved_times(calls_of(atoms, calc, repeat), rounds)
        per_call = {call: {kind: statistics.median(values) / repeat * 1e3 for kind, values in kinds.items()}
                    for call, kinds in times.items()}
        data[name] = {"atoms": len(atoms), "calls_per_sample": repeat, "rounds": rounds, "times_s": times,
                      "median_ms_per_call": per_call}
        calc_ms, model_ms = per_call["calculator"], per_call["model"]
        rows.append([args.tag or "–", name, len(atoms), calc_ms["wall_s"], model_ms["wall_s"],
                     calc_ms["wall_s"] - model_ms["wall_s"], calc_ms["cpu_s"], model_ms["cpu_s"],
                     calc_ms["cpu_s"] - model_ms["cpu_s"]])
    load_after = os.getloadavg()
    data.update(load_average_before=load_before, load_average_after=load_after, tag=args.tag,
                physnetjax=os.path.dirname(physnetjax.__file__))
    title = (f"PhysNetCalculator energy+forces vs the compiled model alone, ms per call (median of {rounds} samples "
             f"of {repeat} calls; load average {load_before[0]:.1f} → {load_after[0]:.1f})")
    publish("calculator_overhead", args, [table(
        title, "wall (perf_counter) and process CPU (process_time) per call; overhead = calculator − model",
        ["version", "system", "atoms", "calc wall", "model wall", "overhead wall", "calc CPU", "model CPU",
         "overhead CPU"], rows)], data)


if __name__ == "__main__":
    main()
