"""Float32 energies, forces and NVE energy conservation on the default device against float64, at the
matrix-product precision physnetjax traces its model with and at XLA's default.

Why: on NVIDIA GPUs since Ampere (A100, H100, H200) XLA computes float32 matrix products
at JAX's default precision in TF32 (operands rounded to a 10-bit mantissa, ~5e-4
relative), which the CPU never does. PhysNet's dense layers and e3x's tensor products are
such products, so the same float32 model can give less accurate forces on a GPU; physnetjax
traces them at ``highest`` unless the user sets ``jax_default_matmul_precision``
(:mod:`physnetjax.matmul_precision`).

What is compared, for the shipped ethanol example model (``physnetjax.pretrained``) on the
first ``frames`` frames of the bundled ethanol set:

* reference: :func:`physnetjax.predict` in float64 (x64 on; float64 products are exact
  IEEE products at any precision setting), computed in a subprocess started with
  ``JAX_ENABLE_X64=1`` (float32 must be run without x64: under x64 e3x promotes float32
  inputs to float64);
* ``physnetjax``: the same calls in float32, no precision set (the library's choice);
* ``user: 'default'``: inside ``jax.default_matmul_precision("default")``, XLA's default
  (TF32 on such a GPU; what physnetjax ran before it chose ``highest``).

Per variant: max |ΔE| (meV), max and RMS |ΔF| over all force components (meV/Å, against
the float64 forces), and the energy drift and fluctuation of a float32 NVE run
(:func:`physnetjax.md.driver.simulate`, 0.5 fs, 300 K, ``steps`` steps, meV/atom/ps and
meV/atom) with its speed. Writes ``gpu_precision.json``.

Usage: python benchmarks/gpu_precision.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from common import parse_args, publish, table

PLAN = {"full": (64, 20000), "quick": (32, 4000), "smoke": (2, 20)}  # mode: (frames, NVE steps)


def evaluate(frames: int, dtype: str) -> dict:
    """Energies (frames,) eV and forces (frames, 9, 3) eV/Å of the example model, as lists."""
    from physnetjax import load_checkpoint, predict
    from physnetjax.data import bundled_dataset_path, load_dataset
    from physnetjax.pretrained import example_model_path

    model, params = load_checkpoint(example_model_path())
    data = load_dataset([bundled_dataset_path()])
    results = [predict(model, params, data.Z[k, : data.N[k]], data.R[k, : data.N[k]].astype(np.float64),
                       dtype=np.dtype(dtype)) for k in range(frames)]
    return {"energy": [float(r["energy"]) for r in results], "forces": [np.asarray(r["forces"]).tolist()
                                                                         for r in results]}


def nve(steps: int) -> dict:
    """Drift (meV/atom/ps) and fluctuation (meV/atom) of a float32 NVE run of the example molecule."""
    import ase.io

    from physnetjax import load_checkpoint
    from physnetjax.md.driver import simulate
    from physnetjax.pretrained import example_geometry_path, example_model_path

    model, params = load_checkpoint(example_model_path())
    report = simulate(model, params, ase.io.read(example_geometry_path()), steps=steps, save_every=10,
                      chunk_frames=min(100, max(1, steps // 10)), dtype="float32", temperature_K=300.0, seed=1)
    return {"drift_meV_per_atom_per_ps": report.drift_meV_per_atom_per_ps,
            "fluctuation_meV_per_atom": report.fluctuation_meV_per_atom,
            "mean_temperature_K": report.mean_temperature_K, "steps_per_second": report.steps_per_second}


def reference(frames: int) -> dict:
    """:func:`evaluate` in float64, in a subprocess with x64 on."""
    code = ("import json, sys; sys.path.insert(0, %r); import gpu_precision; "
            "print(json.dumps(gpu_precision.evaluate(%d, 'float64')))") % (os.path.dirname(__file__), frames)
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "JAX_ENABLE_X64": "1"},
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def errors(variant: dict, ref: dict) -> dict:
    """Max |ΔE| (meV), max and RMS |ΔF| component (meV/Å) of ``variant`` against ``ref``."""
    de = np.abs(np.subtract(variant["energy"], ref["energy"]))
    df = np.subtract(np.asarray(variant["forces"]), np.asarray(ref["forces"]))
    return {"max_abs_dE_meV": 1e3 * float(de.max()), "max_abs_dF_meV_per_A": 1e3 * float(np.abs(df).max()),
            "rms_dF_meV_per_A": 1e3 * float(np.sqrt(np.mean(df ** 2)))}


def main() -> None:
    args = parse_args(__doc__)
    import jax

    frames, steps = PLAN[args.mode]
    ref = reference(frames)
    results = {}
    for name, precision in (("physnetjax (none set)", None), ("user: 'default'", "default")):
        with jax.default_matmul_precision(precision):
            results[name] = {**errors(evaluate(frames, "float32"), ref), **nve(steps)}
        print(name, results[name], flush=True)
    rows = [[name, r["max_abs_dE_meV"], r["max_abs_dF_meV_per_A"], r["rms_dF_meV_per_A"],
             r["drift_meV_per_atom_per_ps"], r["fluctuation_meV_per_atom"], r["steps_per_second"]]
            for name, r in results.items()]
    device = str(jax.devices()[0])
    publish("gpu_precision", args, [table(
        f"Float32 against float64 on {device}: ethanol example model, {frames} frames; NVE {steps} steps",
        "errors against float64 predictions of the same model; NVE 0.5 fs, 300 K, float32",
        ["precision set", "max |dE| meV", "max |dF| meV/A", "RMS dF meV/A", "NVE drift meV/atom/ps",
         "NVE fluct. meV/atom", "MD steps/s"], rows)],
        {"device": device, "frames": frames, "nve_steps": steps, "results": results})


if __name__ == "__main__":
    main()
