"""Cost of the D3(BJ) dispersion term: relative to the model's energy+forces, and against the dftd3 package.

Model: as bench_model (features=32, max_degree=2, num_iterations=2, n_res=2, cutoff 6 Å,
ZBL; charges for the molecules, none for the periodic box), with and without
``dispersion="d3bj"`` (PBE0, ``dispersion_cutoff`` 15 Å for molecules; 10 and 15 Å for
the box). ``--smoke``: features=8, max_degree=1, one iteration.

Systems: ethanol batches (B molecules, all pairs within each molecule) from
../shared/data, and a periodic silicon box (diamond, 5×5×5 cells = 1000 atoms,
rattled by 0.05 Å; ``--smoke``: 2×2×2 = 64 atoms).

What is timed (float32 unless stated; compile excluded; median of repeats, min–max):

* model: one jitted energy+forces call of the whole model, with and without the
  D3 term, the two calls alternating (so a change of load hits both); the overhead is
  (t_with − t_without) / t_without, in wall time and in process CPU time (steadier on a
  shared machine). With dispersion the
  model gets the long pair list (up to the dispersion cutoff), which ZBL then also
  walks, so this is the cost a user pays.
* D3 alone: jitted :func:`physnetjax.physics.d3_dispersion_energy` and its
  gradient on the same pair list, float32 and float64.
* model + D3 + ATM (ethanol only): the same model with ``dispersion_three_body=True``
  and the batch's triplet list (where the package has the three-body term).
* dftd3: the reference package's energy+gradient on each structure of the batch
  (s-dftd3 compiled Fortran, float64, its own OpenMP threads; one repeat = all B
  structures; hard cutoffs 60/40 Bohr for molecules, the same cutoff as ours for
  the box).

``--baseline DIR``: first runs this script (same mode) on the physnetjax package in
DIR (e.g. a checkout of main) in a child process, then on this one, and prints both
side by side ("before → after"). The two runs are sequential, so on a shared machine
the comparison is only as steady as the load.

Writes ``bench_dispersion.json``.

Usage: python benchmarks/bench_dispersion.py [--quick | --smoke] [--out DIR] [--baseline DIR]
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from ase.build import bulk

from common import SHARED_DATA, ms, parse_args, publish, summarise, table, time_call
from physnetjax import PhysNet, apply_batch, batch_molecules, batch_periodic, init_params
from physnetjax.neighbors import model_pair_cutoff

try:
    from physnetjax.neighbors import model_triplet_cutoff
except ImportError:  # a baseline package without the three-body term in the model
    model_triplet_cutoff = None
from physnetjax.physics.dispersion import d3_bj_parameters, d3_dispersion_energy
from physnetjax.units import BOHR

SIZES = {"full": [1, 32, 128], "quick": [1, 32], "smoke": [2]}
BOX = {"full": 5, "quick": 5, "smoke": 2}
BOX_CUTOFFS = {"full": [10.0, 15.0], "quick": [10.0], "smoke": [8.0]}
REPEATS = {"full": 7, "quick": 3, "smoke": 2}


def build_model(mode: str, **kwargs) -> PhysNet:
    if mode == "smoke":
        return PhysNet(features=8, max_degree=1, num_iterations=1, n_res=1, cutoff=6.0, zbl=True, **kwargs)
    return PhysNet(features=32, max_degree=2, num_iterations=2, n_res=2, cutoff=6.0, zbl=True, **kwargs)


def ethanol_frames(count: int):
    data = np.load(SHARED_DATA / "ethanol_gfn2_500K.npz")
    rows = [k % len(data["N"]) for k in range(count)]
    return ([data["Z"][k][: int(data["N"][k])] for k in rows], [data["R"][k][: int(data["N"][k])] for k in rows])


def silicon_box(repeat: int):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((repeat,) * 3)
    atoms.rattle(0.05, seed=0)
    return atoms


def d3_only(batch, dtype, cutoff):
    """Jitted D3 energy+gradient on the batch's pair list (the model's own switch)."""
    params = {k: jnp.asarray(v, dtype) for k, v in dataclasses.asdict(d3_bj_parameters("pbe0")).items()}
    params["s9"] = jnp.asarray(0.0, dtype)

    @jax.jit
    def run(batch, positions):
        def energy(pos):
            vectors = pos[batch.pair_src] - pos[batch.pair_dst]
            if batch.pair_shifts is not None:
                vectors = vectors + batch.pair_shifts
            return jnp.sum(d3_dispersion_energy(batch.atomic_numbers, vectors, batch.pair_dst, batch.pair_src,
                                                batch.pair_mask, batch.atom_segments, batch.num_molecules, params,
                                                cutoff=cutoff, switch_width=0.2 * cutoff))

        return jax.value_and_grad(energy)(positions)

    batch = jax.device_put(batch)
    positions = jnp.asarray(batch.positions, dtype)
    return time_call(lambda: jax.block_until_ready(run(batch, positions)), repeats=3)


def dftd3_reference(structures, cell=None, cutoff=None):
    """The dftd3 package's energy+gradient over every structure, one repeat = all of them."""
    try:
        from dftd3.interface import DispersionModel, RationalDampingParam
    except ImportError:
        return None
    param = RationalDampingParam(method="pbe0", atm=False)
    models = []
    for z, r in structures:
        model = DispersionModel(z, r / BOHR, None if cell is None else cell / BOHR,
                                None if cell is None else np.array([True] * 3))
        if cutoff is not None:
            model.set_realspace_cutoff(cutoff / BOHR, cutoff / BOHR, cutoff / BOHR)
        models.append(model)
    return time_call(lambda: [m.get_dispersion(param, grad=True) for m in models], repeats=3, warmup=1)


def time_interleaved(calls: dict, repeats: int) -> dict:
    """:func:`time_call` of each call, the calls alternating round by round (a load change hits all alike).

    Each result also holds ``cpu_median_s``, the median process CPU time of a call (all
    threads): on a machine shared with other jobs it varies far less than wall time.
    """
    for call in calls.values():
        for _ in range(3):
            call()
    times = {name: [] for name in calls}
    cpu = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            call()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: {**summarise(values), "cpu_median_s": float(np.median(cpu[name]))} for name, values in times.items()}


def model_pair(mode, dispersion_cutoff, **kwargs):
    plain = build_model(mode, **kwargs)
    with_d3 = plain.clone(dispersion="d3bj", dispersion_cutoff=dispersion_cutoff)
    params = init_params(plain, 0)
    apply = {m: jax.jit(lambda p, b, m=m: apply_batch(m, p, b)) for m in (plain, with_d3)}
    return plain, with_d3, params, apply


def molecule_rows(mode):
    plain, with_d3, params, apply = model_pair(mode, 15.0, charges=True)
    models = [("without", plain), ("with", with_d3)]
    if model_triplet_cutoff is not None:
        with_atm = with_d3.clone(dispersion_three_body=True)
        apply[with_atm] = jax.jit(lambda p, b: apply_batch(with_atm, p, b))
        models.append(("with_atm", with_atm))
    rows = []
    for size in SIZES[mode]:
        zs, rs = ethanol_frames(size)
        calls = {}
        for name, model in models:
            extra = {} if model_triplet_cutoff is None else {"three_body_cutoff": model_triplet_cutoff(model)}
            batch = jax.device_put(batch_molecules(zs, rs, model.cutoff, pair_cutoff=model_pair_cutoff(model),
                                                   **extra))
            calls[name] = lambda m=model, b=batch: jax.block_until_ready(apply[m](params, b))
        timings = time_interleaved(calls, REPEATS[mode])
        batch64 = batch_molecules(zs, rs, with_d3.cutoff, pair_cutoff=None, dtype=np.float64)
        rows.append({"system": "ethanol", "B": size, "atoms": sum(len(z) for z in zs),
                     "pairs": int(np.sum(batch.pair_mask)), **_times(timings, batch, batch64, 15.0),
                     "dftd3": dftd3_reference(list(zip(zs, rs)))})
    return rows


def box_rows(mode):
    atoms = silicon_box(BOX[mode])
    z, r, cell = atoms.numbers, atoms.positions, np.asarray(atoms.cell)
    rows = []
    for cutoff in BOX_CUTOFFS[mode]:
        plain, with_d3, params, apply = model_pair(mode, cutoff)
        calls = {}
        for name, model in (("without", plain), ("with", with_d3)):
            batch = jax.device_put(batch_periodic([z], [r], [cell], model.cutoff,
                                                  pair_cutoff=model_pair_cutoff(model)))
            calls[name] = lambda m=model, b=batch: jax.block_until_ready(apply[m](params, b))
        timings = time_interleaved(calls, REPEATS[mode])
        batch64 = batch_periodic([z], [r], [cell], with_d3.cutoff, pair_cutoff=cutoff, dtype=np.float64)
        rows.append({"system": f"Si box, D3 cutoff {cutoff:g} Å", "B": 1, "atoms": len(z),
                     "pairs": int(np.sum(batch.pair_mask)), **_times(timings, batch, batch64, cutoff),
                     "dftd3": dftd3_reference([(z, r)], cell, cutoff)})
    return rows


def _times(timings, batch32, batch64, cutoff):
    jax.config.update("jax_enable_x64", True)
    try:
        d3_64 = d3_only(jax.device_put(batch64), jnp.float64, cutoff)
    finally:
        jax.config.update("jax_enable_x64", False)
    return {"model_without": timings["without"], "model_with": timings["with"],
            "overhead": timings["with"]["median_s"] / timings["without"]["median_s"] - 1.0,
            "overhead_cpu": timings["with"]["cpu_median_s"] / timings["without"]["cpu_median_s"] - 1.0,
            "model_with_atm": timings.get("with_atm"),
            "d3_float32": d3_only(batch32, jnp.float32, cutoff), "d3_float64": d3_64}


def baseline_rows(args):
    """This script's rows measured on the package in ``args.baseline`` (child process, same mode)."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, __file__, f"--{args.mode}", "--out", out] if args.mode != "full" else [
            sys.executable, __file__, "--out", out]
        env = {**os.environ, "PYTHONPATH": str(pathlib.Path(args.baseline).resolve())}
        subprocess.run(command, check=True, env=env, cwd=pathlib.Path(args.baseline).resolve())
        return json.loads((pathlib.Path(out) / "bench_dispersion.json").read_text())["data"]["rows"]


def _before_after(before, after, key):
    if before is None:
        return ms(after[key])
    return f"{before[key]['median_s'] * 1e3:.3g} → {after[key]['median_s'] * 1e3:.3g}"


def main():
    args = parse_args(__doc__, extra=lambda p: p.add_argument(
        "--baseline", type=pathlib.Path, default=None, help="physnetjax source tree to compare against"))
    before = baseline_rows(args) if args.baseline is not None else None
    rows = molecule_rows(args.mode) + box_rows(args.mode)
    step = "jitted energy+forces, compile excluded; median (min–max) of repeats, ms"
    if before is not None:
        step = f"before ({args.baseline}) → after: medians, ms; " + step
    pairs = before if before is not None else [None] * len(rows)
    tables = [table(
        "D3(BJ) cost: model with vs without, D3 alone, dftd3 package", step,
        ["system", "B", "atoms", "pairs", "model (no D3)", "model + D3", "overhead", "overhead (CPU time)",
         "model + D3 + ATM",
         "D3 alone f32", "D3 alone f64", "dftd3 (f64, CPU)"],
        [[r["system"], r["B"], r["atoms"], r["pairs"], _before_after(b, r, "model_without"),
          _before_after(b, r, "model_with"),
          (f"{100 * b['overhead']:.0f} % → " if b is not None else "") + f"{100 * r['overhead']:.0f} %",
          (f"{100 * b['overhead_cpu']:.0f} % → " if b is not None else "") + f"{100 * r['overhead_cpu']:.0f} %",
          "–" if r.get("model_with_atm") is None else ms(r["model_with_atm"]),
          _before_after(b, r, "d3_float32"), _before_after(b, r, "d3_float64"),
          "–" if r["dftd3"] is None else ms(r["dftd3"])] for b, r in zip(pairs, rows)])]
    publish("bench_dispersion", args, tables, {"rows": rows, "baseline_rows": before,
                                               "baseline": None if args.baseline is None else str(args.baseline)})


if __name__ == "__main__":
    main()
