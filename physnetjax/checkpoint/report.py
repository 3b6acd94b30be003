"""The migration report: what a legacy checkpoint held, where it went, and what changed.

Energies are compared per term on reference geometries. The *old* values come
from outputs of the original code (``reference_outputs.npz`` stored with a legacy
checkpoint, or a file the user passes); physnetjax does not re-implement the
original's pair terms. The *new* values are computed here, on the same graph the
reference used: one molecule at a time with all atom pairs (the original's
``e3x.ops.sparse_pairwise_indices``), no padding.

Terms (per geometry, eV):

* ``network``: Σ_i E_i^NN (with the per-element bias). Must be identical: old value
  ``energy_no_pair_terms`` (raw weights) or ``energy − repulsion − electrostatics``.
* ``zbl``: nuclear repulsion; ``electrostatics``; ``total``.
* ``charge correction``: max_i |q_i − q̃_i| = |Q − Σ q̃| / N, in e (the original did
  not correct charges).
* ``forces``: max and RMS of |F_new − F_old| over atoms and components, eV/Å.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from physnetjax import compilation
from physnetjax.checkpoint.errors import CheckpointError
from physnetjax.checkpoint.legacy import LegacyMigration
from physnetjax.npz_file import NpzReadError, read_npz
from physnetjax.text_table import print_line, print_table

FLOAT32_EPS = float(np.finfo(np.float32).eps)
NETWORK_TOLERANCE_ULPS = 8
"""``network`` must agree within 8 float32 ulps of the magnitudes summed (Σ|terms|)."""
LARGE_ENERGY_CHANGE = 0.043
"""eV per molecule (1 kcal/mol): above this the physics change is 'large'."""
LARGE_FORCE_CHANGE = 0.05
"""eV/Å: above this the physics change is 'large'."""


def read_geometries(path) -> dict:
    """Reference geometries from an ``.npz``: ``Z`` (M, N) int, ``R`` (M, N, 3) Å, optional
    ``N`` (M,) real atoms per row (default N), optional ``Q`` (M,) total charges in e.

    Raises:
      CheckpointError: missing keys, inconsistent shapes, atom counts outside 1..N, or
        positions of real atoms that are not finite (named; such frames would otherwise
        show up as a network that does not reproduce the original's energies).
    """
    try:
        data = read_npz(path)
    except NpzReadError as error:
        raise CheckpointError(f"geometry file {path} cannot be read as .npz: {error}") from error
    if "Z" not in data or "R" not in data:
        raise CheckpointError(f"geometry file {path} must contain Z (M, N) and R (M, N, 3); found {sorted(data)}")
    z = np.asarray(data["Z"])
    r = np.asarray(data["R"])
    if z.ndim == 1:
        z, r = z[None], r[None]
    counts = np.asarray(data["N"]).reshape(-1) if "N" in data else np.full(z.shape[0], z.shape[1])
    charges = np.asarray(data["Q"], dtype=np.float64).reshape(-1) if "Q" in data else np.zeros(z.shape[0])
    if r.shape != z.shape + (3,) or counts.shape != (z.shape[0],) or charges.shape != (z.shape[0],):
        raise CheckpointError(
            f"geometry file {path}: inconsistent shapes Z {z.shape}, R {r.shape}, N {counts.shape}, Q {charges.shape}"
        )
    bad = np.nonzero((counts < 1) | (counts > z.shape[1]))[0]
    if bad.size:
        raise CheckpointError(f"geometry file {path}: N must count 1..{z.shape[1]} real atoms per frame, received "
                              f"{counts[bad].tolist()} in frame(s) {bad.tolist()}")
    broken = [k for k in range(z.shape[0]) if not np.isfinite(np.asarray(r[k, : int(counts[k])], np.float64)).all()]
    if broken:
        raise CheckpointError(f"geometry file {path}: positions R of frame(s) {broken} hold NaN or Inf; the "
                              "comparison with the original's outputs needs the geometries they were computed on")
    return {"Z": z, "R": r, "N": counts.astype(int), "Q": charges}


REFERENCE_SHAPES = {"energy": (), "energy_no_pair_terms": (), "electrostatics": (), "repulsion_total": (),
                    "forces": ("atoms", 3), "charges": ("atoms",)}
"""Per-frame shape (after the frame axis) of each original-code output read from a reference file; ``"atoms"``: at
least the largest geometry's atom count (padded). ``repulsion`` may be per frame or per atom."""


def check_reference_shapes(reference: dict, prefix: str, counts: np.ndarray, path) -> None:
    """Refuse a reference file whose outputs do not hold one entry per geometry (a truncated or edited file).

    Raises:
      CheckpointError: naming the key, its shape and the shape the geometries need.
    """
    frames, atoms = len(counts), int(np.max(counts))
    for name, shape in {**REFERENCE_SHAPES, "repulsion": None}.items():
        if prefix + name not in reference:
            continue
        found = np.shape(reference[prefix + name])
        shapes = [shape] if shape is not None else [(), ("atoms",)]
        fits = any(found[:1] == (frames,) and len(found) == 1 + len(wanted)
                   and all(f >= atoms if w == "atoms" else f == w for f, w in zip(found[1:], wanted))
                   for wanted in shapes)
        scalar_per_frame = shape == () and len(found) == 2 and found == (frames, 1)
        if not (fits or scalar_per_frame):
            needed = " or ".join(str((frames, *(atoms if w == "atoms" else w for w in wanted))) for wanted in shapes)
            raise CheckpointError(f"reference file {path}: {prefix + name!r} has shape {found}, but the "
                                  f"{frames} geometries need {needed}: the file is truncated or belongs to other "
                                  "geometries; give their reference outputs, or leave --reference out to migrate "
                                  "without the comparison")


def _old_terms(reference: dict, prefix: str, counts: np.ndarray) -> dict:
    """Per-geometry old quantities from an original-code output file (see module doc)."""
    def get(key):
        return np.asarray(reference[prefix + key]) if prefix + key in reference else None

    energy = get("energy")
    if energy is None:
        return {}
    energy = energy.reshape(-1).astype(np.float64)
    repulsion = get("repulsion")
    if repulsion is not None and repulsion.ndim == 2:
        repulsion = repulsion.astype(np.float64).sum(axis=1)
    elif get("repulsion_total") is not None:
        repulsion = get("repulsion_total").reshape(-1).astype(np.float64)
    else:
        repulsion = np.zeros_like(energy)
    electrostatics = get("electrostatics")
    electrostatics = np.zeros_like(energy) if electrostatics is None else electrostatics.reshape(-1).astype(np.float64)
    network = get("energy_no_pair_terms")
    derived = network is None
    if derived:
        network = energy - repulsion - electrostatics
    terms = {
        "total": energy,
        "network": network.reshape(-1).astype(np.float64),
        "network_derived": derived,
        "zbl": repulsion,
        "electrostatics": electrostatics,
        "magnitude": np.abs(energy) + np.abs(repulsion) + np.abs(electrostatics),
    }
    forces = get("forces")
    if forces is not None:
        terms["forces"] = [forces[k, : counts[k]].astype(np.float64) for k in range(len(counts))]
    charges = get("charges")
    if charges is not None:
        terms["charges"] = [charges[k, : counts[k]].astype(np.float64) for k in range(len(counts))]
    return terms


def evaluate_new(model, params, geometries: dict) -> dict:
    """The migrated model on every geometry, all atom pairs, one molecule per slot, float32.

    Returns per geometry: ``total``, ``network``, ``zbl``, ``electrostatics`` (eV),
    ``atomic_energies`` (n,), ``forces`` (n, 3), ``charges``/``raw_charges`` (n,) or None.
    """
    from physnetjax.neighbors.batch import apply_batch, model_pair_cutoff
    from physnetjax.neighbors.molecules import batch_molecules

    counts = geometries["N"]
    zs = [geometries["Z"][k, : counts[k]] for k in range(len(counts))]
    rs = [geometries["R"][k, : counts[k]] for k in range(len(counts))]
    batch = batch_molecules(
        zs, rs, math.inf, total_charges=list(geometries["Q"]), pair_cutoff=model_pair_cutoff(model),
        dtype=np.float32,
    )
    out = compilation.jit(lambda p, b: apply_batch(model, p, b))(params, batch)
    out = {key: (None if value is None else np.asarray(value, dtype=np.float64)) for key, value in out.items()}
    starts = np.concatenate([[0], np.cumsum(counts)])

    def atoms(key, k):
        return None if out[key] is None else out[key][starts[k]: starts[k + 1]]

    return {
        "total": out["energy"][: len(counts)],
        "network": out["nn_energy"][: len(counts)],
        "zbl": out["repulsion"][: len(counts)],
        "electrostatics": out["electrostatics"][: len(counts)],
        "atomic_energies": [atoms("atomic_energies", k) for k in range(len(counts))],
        "forces": [atoms("forces", k) for k in range(len(counts))],
        "charges": [atoms("charges", k) for k in range(len(counts))],
        "raw_charges": [atoms("raw_charges", k) for k in range(len(counts))],
    }


def compare(migration: LegacyMigration, geometries: dict, reference: Optional[dict]) -> dict:
    """Per-geometry old/new terms and a summary with the recommendation (JSON-ready)."""
    new = evaluate_new(migration.model, migration.params, geometries)
    prefix = "ema_" if migration.weights == "ema_params" else ""
    old = _old_terms(reference, prefix, geometries["N"]) if reference is not None else {}
    rows = []
    for k in range(len(geometries["N"])):
        row = {"geometry": k, "atoms": int(geometries["N"][k]), "total_charge": float(geometries["Q"][k])}
        for term in ("network", "zbl", "electrostatics", "total"):
            entry = {"new": float(new[term][k])}
            if old:
                entry["old"] = float(old[term][k])
                entry["delta"] = entry["new"] - entry["old"]
            row[term] = entry
        if new["charges"][k] is not None:
            correction = np.abs(new["charges"][k] - new["raw_charges"][k])
            row["charge_correction_e"] = float(correction.max())
            if "charges" in old:
                row["raw_charges_max_abs_delta_e"] = float(np.abs(new["raw_charges"][k] - old["charges"][k]).max())
        if "forces" in old:
            delta = new["forces"][k] - old["forces"][k]
            row["forces"] = {
                "old_max_abs": float(np.abs(old["forces"][k]).max()),
                "new_max_abs": float(np.abs(new["forces"][k]).max()),
                "max_abs_delta": float(np.abs(delta).max()),
                "rms_delta": float(np.sqrt(np.mean(delta**2))),
            }
        if old:
            summed = float(np.abs(new["atomic_energies"][k]).sum())
            magnitude = summed + (float(old["magnitude"][k]) if old["network_derived"] else 0.0)
            row["network"]["tolerance"] = NETWORK_TOLERANCE_ULPS * FLOAT32_EPS * max(magnitude, 1.0)
            row["network"]["identical"] = abs(row["network"]["delta"]) <= row["network"]["tolerance"]
        rows.append(row)
    return {"reference": "original-code outputs" if old else None,
            "network_old_derived": bool(old.get("network_derived", False)),
            "geometries": rows, "summary": _summary(migration, rows, bool(old))}


def _summary(migration: LegacyMigration, rows: list, have_old: bool) -> dict:
    model = migration.model
    summary: dict = {"geometries": len(rows)}
    if have_old:
        summary["network_identical"] = all(row["network"]["identical"] for row in rows)
        summary["max_abs_delta_network_eV"] = max(abs(row["network"]["delta"]) for row in rows)
        summary["max_abs_delta_total_eV"] = max(abs(row["total"]["delta"]) for row in rows)
        summary["max_abs_delta_zbl_eV"] = max(abs(row["zbl"]["delta"]) for row in rows)
        summary["max_abs_delta_electrostatics_eV"] = max(abs(row["electrostatics"]["delta"]) for row in rows)
        if all("forces" in row for row in rows):
            summary["max_abs_delta_forces_eV_per_A"] = max(row["forces"]["max_abs_delta"] for row in rows)
    if rows and "charge_correction_e" in rows[0]:
        summary["max_charge_correction_e"] = max(row["charge_correction_e"] for row in rows)
    if have_old:
        large = (summary["max_abs_delta_total_eV"] > LARGE_ENERGY_CHANGE
                 or summary.get("max_abs_delta_forces_eV_per_A", 0.0) > LARGE_FORCE_CHANGE)
    else:
        large = bool(model.zbl or model.charges)
    summary["large_change"] = large
    if large:
        summary["recommendation"] = (
            "The physics changed substantially"
            + ("" if have_old else " (zbl/charges: the pair terms were rewritten; no old outputs to measure it)")
            + ": fine-tune before use, e.g. `python -m physnetjax.train --init-from NEW ...` on your data."
        )
    else:
        summary["recommendation"] = (
            "Energies and forces are unchanged within "
            f"{LARGE_ENERGY_CHANGE} eV / {LARGE_FORCE_CHANGE} eV/Å: the migrated model can be used as is."
            if have_old else
            "No pair terms: the network is carried over unchanged; no fine-tuning is needed."
        )
    return summary


def migration_report(migration: LegacyMigration, geometries: Optional[dict] = None,
                     reference: Optional[dict] = None) -> dict:
    """The full report (JSON-ready): hyperparameters, parameter map, notes, comparison."""
    from physnetjax import __version__

    report = {
        "source": str(migration.source),
        "weights": migration.weights,
        "library_version": __version__,
        "model": migration.model.config(),
        "hyperparameters": migration.attributes,
        "parameters": [
            {"source": r.source, "target": r.target, "shape": list(r.shape), "dtype": r.dtype, "action": r.action}
            for r in migration.parameters
        ],
        "notes": list(migration.notes),
        "comparison": None,
    }
    if geometries is not None:
        report["comparison"] = compare(migration, geometries, reference)
    return report


def find_beside(source: Path, name: str, extra: Optional[Path] = None) -> Optional[Path]:
    """``name`` in ``extra`` (the path the user gave) or in the directory holding ``source``."""
    for directory in ([extra] if extra is not None and extra.is_dir() else []) + [source.parent]:
        if (directory / name).is_file():
            return directory / name
    return None


def render(report: dict, console) -> None:
    """Print the report on ``console`` (a ``rich.console.Console``): rich tables on a terminal,
    plain columns that are never cut elsewhere (see :mod:`physnetjax.text_table`)."""
    from rich.text import Text

    print_line(console, Text("Migrated", style="bold") + f" {report['source']} ({report['weights']})")
    rows = [[name, str(entry["raw"]), entry["type"], str(entry["value"]), entry["use"]]
            for name, entry in report["hyperparameters"].items()]
    print_table(console, "Hyperparameters read", ["attribute", "stored", "type", "parsed", "use"], rows)

    entry = report["weights"]
    rows = [[record["target"] or record["source"].removeprefix(entry + "/"), str(tuple(record["shape"])),
             record["action"]] for record in report["parameters"]]
    print_table(console, f"Parameters: legacy {entry}/<path> → new <path>", ["path", "shape", "action"], rows)

    comparison = report["comparison"]
    if comparison is not None:
        rows = []
        for row in comparison["geometries"]:
            for term in ("network", "zbl", "electrostatics", "total"):
                entry = row[term]
                label = term + (" ✓" if entry.get("identical") else (" ✗" if "identical" in entry else ""))
                rows.append([str(row["geometry"]), label, _fmt(entry.get("old")), _fmt(entry["new"]),
                             _fmt(entry.get("delta"))])
            if "forces" in row:
                forces = row["forces"]
                rows.append([str(row["geometry"]), "max |F comp.|", _fmt(forces["old_max_abs"]),
                             _fmt(forces["new_max_abs"]), f"max {forces['max_abs_delta']:.4g}"])
            if "charge_correction_e" in row:
                rows.append([str(row["geometry"]), "charge corr.", "", _fmt(row["charge_correction_e"]), ""])
        print_table(console, "Energies on the reference geometries (eV); forces (eV/Å); charges (e)",
                    ["geom", "term", "old", "new", "new − old"], rows, justify=["right"] * 5)
        if comparison["reference"] is None:
            print_line(console, "No outputs of the original code were given: only new values are shown.")
        for key, value in comparison["summary"].items():
            if key != "recommendation":
                shown = f"{value:.6g}" if isinstance(value, float) else value  # the JSON report keeps every digit
                print_line(console, f"  {key}: {shown}")
        print_line(console, Text("Recommendation:", style="bold") + f" {comparison['summary']['recommendation']}")
    for note in report["notes"]:
        print_line(console, f"  • {note}")


def _fmt(value) -> str:
    return "" if value is None else f"{value:.6g}"
