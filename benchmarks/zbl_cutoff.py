"""How far should ZBL reach by default? Repulsion at equilibrium and a small training comparison.

Part 1 (no training, float64): the ZBL repulsion energy and its largest force on the
first frame of the bundled ethanol set (and of the shared methanol/CO2 sets when
present) for a switch-off radius r_c of the model cutoff (5 Å, the old default
"None → cutoff"), 3, 2.5, 2, 1.5 Å, and the value of the switch φ(r/r_c) at the C–H
and C–C bond lengths.

Part 2 (``--epochs N``, default 6): the trainer on the bundled ethanol set (small
model, features 16, 300 training frames) with ZBL switched off at the model cutoff
vs. the candidate default, same seed and budget; reports the test-set energy and
force errors and a short NVE run (2000 × 0.5 fs from 300 K, the check's stability
test) of each trained model.

Usage: python benchmarks/zbl_cutoff.py [--epochs N] [--smoke] [--out DIR]
Writes DIR/zbl_cutoff.json (default benchmarks/results).
"""

from __future__ import annotations

import json
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from common import SHARED_DATA, machine_info, parse_args
from physnetjax.data import bundled_dataset_path
from physnetjax.neighbors import molecule_pairs
from physnetjax.physics import cutoff_polynomial, safe_pair_distances, zbl_pair_energy

jax.config.update("jax_enable_x64", True)

CANDIDATES = (5.0, 3.0, 2.5, 2.0, 1.5)


def repulsion(z, r, cutoff):
    """(E_ZBL eV, max |F_ZBL| eV/Å) of one molecule over all pairs, float64."""
    dst, src = molecule_pairs(r, None)

    def energy(positions):
        d = positions[src] - positions[dst]
        mask = jnp.ones(len(dst), bool)
        return 0.5 * jnp.sum(zbl_pair_energy(z[dst], z[src], safe_pair_distances(d, mask), mask, cutoff))

    e, g = jax.value_and_grad(energy)(jnp.asarray(r, jnp.float64))
    return float(e), float(jnp.max(jnp.linalg.norm(g, axis=-1)))


def first_frames():
    frames = {}
    with np.load(bundled_dataset_path()) as data:
        n = int(data["N"][0])
        frames["ethanol"] = (data["Z"][0, :n].astype(int), data["R"][0, :n].astype(np.float64))
    for name in ("methanol", "co2"):
        path = SHARED_DATA / f"{name}_gfn2_500K.npz"
        if path.exists():
            with np.load(path) as data:
                n = int(data["N"][0])
                frames[name] = (data["Z"][0, :n].astype(int), data["R"][0, :n].astype(np.float64))
    return frames


def train_and_check(zbl_cutoff, epochs, frames, workdir):
    """Test errors and NVE drift of a small model trained with ZBL switched off at ``zbl_cutoff``."""
    from physnetjax.check import check_model
    from physnetjax.check.settings import CheckSettings
    from physnetjax.train import TrainConfig, train

    config = TrainConfig(features=16, max_degree=1, num_iterations=2, num_basis_functions=16, cutoff=5.0,
                         zbl=True, zbl_cutoff=zbl_cutoff, epochs=epochs, batch_size=16, train=300,
                         valid=0.05, test=0.1, seed=0, out=str(workdir / f"zbl-{zbl_cutoff}"), progress=False,
                         plots=False)
    summary = train(config)
    from physnetjax.checkpoint import load_checkpoint
    model, params = load_checkpoint(pathlib.Path(config.out) / "best")
    report = check_model(model, params, [frames["ethanol"]], groups=("stability",),
                         settings=CheckSettings(nve_steps=2000))
    stability = {c.id: c.value for c in report.checks}
    return {"zbl_cutoff": zbl_cutoff, "summary": summary, "stability": stability}


def main():
    args = parse_args(__doc__, lambda p: p.add_argument("--epochs", type=int, default=6))
    frames = first_frames()
    rows, data = [], {"repulsion": {}, "switch_at_bonds": {}}
    for name, (z, r) in frames.items():
        for cutoff in CANDIDATES:
            e, f = repulsion(z, r, cutoff)
            data["repulsion"].setdefault(name, []).append({"zbl_cutoff": cutoff, "energy_eV": e, "max_force_eV_per_A": f})
            rows.append([name, cutoff, round(e, 4), round(f, 4)])
            print(f"{name:9s} r_c = {cutoff:3.1f} Å: E_ZBL = {e:9.4f} eV, max |F_ZBL| = {f:8.4f} eV/Å", flush=True)
    for bond, length in (("C-H", 1.09), ("O-H", 0.96), ("C-C", 1.53)):
        data["switch_at_bonds"][bond] = {str(c): float(cutoff_polynomial(length / c)) for c in CANDIDATES}
    if args.mode != "smoke":
        with tempfile.TemporaryDirectory() as tmp:
            data["training"] = [train_and_check(c, args.epochs, frames, pathlib.Path(tmp)) for c in (None, 2.0)]
        for run in data["training"]:
            print(json.dumps(run), flush=True)
    result = {"benchmark": "zbl_cutoff", "mode": args.mode, "machine": machine_info(),
              "tables": [{"title": "ZBL repulsion at the first bundled frame vs switch-off radius", "timed": False,
                          "columns": ["molecule", "zbl_cutoff Å", "E_ZBL eV", "max |F_ZBL| eV/Å"], "rows": rows}],
              "plots": [], "data": data}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "zbl_cutoff.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
