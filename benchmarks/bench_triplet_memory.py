"""Time and peak memory of the D3 three-body (ATM) triplet list of a dense periodic box, and of a calculator call.

A D3(BJ)+ATM model at 15 Å on a rattled periodic box of ``per_side``³ water molecules (≈ 1 g/cm³): every triangle of
atoms within the cutoff is listed once per vertex (1.9e8 pairs-of-pairs for 4³ = 192 atoms). Each measurement runs
in a fresh process, so that its peak resident memory (``ru_maxrss``) is its own:

* ``host list``: :func:`physnetjax.neighbors.triplets.padded_triplets` on the box's 15 Å pair list (time, peak);
* ``calculator call``: the first ``atoms.get_forces()`` through :class:`PhysNetCalculator` (features 16, randomly
  initialised, float32), compilation included (time, peak).

``--smoke``: a box of 2³ molecules with 6 Å cutoffs, the host list only; ``--quick``: 4³, the host list only.
Writes ``bench_triplet_memory.json``.

    python benchmarks/bench_triplet_memory.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
from calculator_overhead import water_box
from common import parse_args, publish_timed_table

CUTOFF = {"full": 15.0, "quick": 15.0, "smoke": 6.0}
"""Dispersion (and three-body) cutoff in Å per mode."""
PER_SIDE = {"full": 4, "quick": 4, "smoke": 2}
"""Water molecules per box side per mode."""


def measure(what: str, mode: str) -> dict:
    """Run ``what`` ("host list" or "calculator call") in this process: {"seconds", "peak_gb", "triplets"}."""
    from physnetjax import PhysNet, init_params
    from physnetjax.calculator import PhysNetCalculator
    from physnetjax.neighbors.periodic import periodic_pairs
    from physnetjax.neighbors.triplets import padded_triplets

    warnings.simplefilter("ignore")  # the random model's training-record warnings are not what is measured
    box, cutoff = water_box(PER_SIDE[mode]), CUTOFF[mode]
    if what == "host list":
        dst, src, shifts = periodic_pairs(box.positions, np.asarray(box.cell), cutoff)
        vectors = box.positions[src] - box.positions[dst] + shifts
        start = time.perf_counter()
        _, mask = padded_triplets(dst, np.ones(len(dst), bool), vectors, cutoff)
        count = int(mask.sum())
    else:
        model = PhysNet(features=16, max_degree=1, num_iterations=2, num_basis_functions=8, cutoff=5.0,
                        max_atomic_number=8, n_res=1, dispersion="d3bj", dispersion_three_body=True,
                        dispersion_cutoff=cutoff)
        box.calc = PhysNetCalculator(model, init_params(model, 0))
        start = time.perf_counter()
        box.get_forces()
        count = None
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, "triplets": count}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
        return
    args = parse_args(__doc__)
    load_before = os.getloadavg()
    kinds = ["host list"] if args.mode != "full" else ["host list", "calculator call"]
    rows, data = [], {}
    for what in kinds:
        run = subprocess.run([sys.executable, __file__, "--child", what, args.mode], capture_output=True, text=True,
                             check=True)
        result = json.loads(run.stdout.strip().splitlines()[-1])
        data[what] = result
        rows.append([what, 3 * PER_SIDE[args.mode] ** 3, CUTOFF[args.mode], result["triplets"], result["seconds"],
                     result["peak_gb"]])
    publish_timed_table("bench_triplet_memory", args, "D3 three-body triplet list of a periodic water box (one fresh "
                        "process per row", "wall time of the call (perf_counter) and the process's peak resident "
                        "memory (ru_maxrss)", ["measured", "atoms", "cutoff (Å)", "pairs-of-pairs", "time (s)",
                                               "peak (GB)"], rows, data, load_before)


if __name__ == "__main__":
    main()
