"""Convert a legacy physnetjax checkpoint to the current format, with a report.

Usage::

    python -m physnetjax.migrate OLD NEW [--weights ema|raw] [--geometries G.npz]
                                         [--reference R.npz] [--overwrite] [--allow-pickle] [--verbose]

``OLD`` is a run directory ``name-uuid/`` (its latest ``epoch-N`` is used) or an
``epoch-N`` directory. ``NEW`` becomes a new-format checkpoint; the report is
printed and written as ``NEW/migration_report.json``. Reference geometries and
original-code outputs default to ``geometries.npz`` / ``reference_outputs.npz``
found in ``OLD`` or in the directory holding the ``epoch-N`` directory; with
``--geometries`` only a ``--reference`` given with it is compared (it must hold one
energy per geometry).

Exit status (:mod:`physnetjax.cli_errors`): 0 on success; 1 when the migrated network
does not reproduce the original's network energies (nothing is written then); 2 when
the checkpoint, the geometries or the reference cannot be read or migrated (reference
outputs holding NaN or Inf included); 3 when ``NEW`` exists (without ``--overwrite``)
or cannot be written — checked before the migration runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from physnetjax.checkpoint.errors import CheckpointError
from physnetjax.checkpoint.format import absolute_path, check_not_a_run_checkpoint, is_checkpoint, save_checkpoint
from physnetjax.checkpoint.legacy import migrate_legacy
from physnetjax.checkpoint.report import (REFERENCE_SHAPES, check_reference_shapes, find_beside, migration_report,
                                         read_geometries, render)
from physnetjax.cli_errors import EXIT_OK, EXIT_VERDICT, cli_main, configure_logging, exit_process
from physnetjax.cli_help import ArgumentParser, HelpFormatter
from physnetjax.errors import OutputPathError, OutputWriteError
from physnetjax.jsonlines import replace_text
from physnetjax.npz_file import NpzReadError, read_npz
from physnetjax.text_table import print_line
from physnetjax.validation import check_directory_creatable

REPORT_FILE = "migration_report.json"

logger = logging.getLogger("physnetjax.migrate")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m physnetjax.migrate", formatter_class=HelpFormatter,
        description="Convert a legacy physnetjax checkpoint to the physnetjax format and report what changed.",
    )
    parser.add_argument("old", type=Path, help="legacy run directory (name-uuid/) or epoch-N directory")
    parser.add_argument("new", type=Path, help="new checkpoint directory to write")
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema",
                        help="ema: the legacy ema_params (default); raw: the legacy params")
    parser.add_argument("--geometries", type=Path, default=None,
                        help="npz with Z (M,N), R (M,N,3) Å, optional N (M,), Q (M,) for the energy comparison "
                             "(default: geometries.npz beside OLD, if any)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="npz of original-code outputs on those geometries (energy, forces, repulsion, "
                             "electrostatics, charges, energy_no_pair_terms; ema_* for EMA weights; "
                             "default: reference_outputs.npz beside OLD, if any, unless --geometries is given)")
    parser.add_argument("--overwrite", action="store_true", help="replace NEW if it is a checkpoint")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow reading a legacy pickle file (only for files you trust)")
    parser.add_argument("--verbose", action="store_true", help="log progress")
    return parser


def migrate(old, new, *, weights: str = "ema", geometries=None, reference=None, overwrite: bool = False,
            allow_pickle: bool = False) -> dict:
    """Migrate ``old`` to a new-format checkpoint at ``new``; returns the report dict.

    Raises:
      OutputPathError: ``new`` exists (without ``overwrite``) or its directory is not writable.
      CheckpointError: unreadable/unsupported legacy checkpoint or geometries, or reference outputs that do not
        fit the geometries or hold NaN/Inf.
      MigrationMismatchError: the migrated network does not reproduce the reference network energies.
    """
    old = absolute_path(old)
    check_new_path(new, overwrite)
    migration = migrate_legacy(old, weights=weights, allow_pickle=allow_pickle)
    geometry_file = geometries or find_beside(migration.source, "geometries.npz", old)
    # The reference_outputs.npz beside OLD holds the outputs on the geometries.npz beside it, not on --geometries.
    reference_file = reference or (find_beside(migration.source, "reference_outputs.npz", old)
                                   if geometries is None else None)
    geoms = read_geometries(geometry_file) if geometry_file is not None else None
    ref = None
    if geoms is not None and reference_file is not None:
        try:
            ref = read_npz(reference_file)
        except NpzReadError as error:
            raise CheckpointError(f"reference file {reference_file} cannot be read as .npz: {error}") from error
        key = ("ema_" if migration.weights == "ema_params" else "") + "energy"
        if key not in ref:
            raise CheckpointError(f"reference file {reference_file} holds no original-code outputs of the "
                                  f"{migration.weights} (no {key!r}; keys present: {sorted(ref)}): is it the "
                                  "reference_outputs.npz of this checkpoint? Leave --reference out to migrate "
                                  "without the comparison")
        frames = np.asarray(ref[key]).reshape(-1).shape[0]
        if frames != geoms["Z"].shape[0]:
            raise CheckpointError(f"reference file {reference_file} holds {frames} energies but the geometry file "
                                  f"{geometry_file} {geoms['Z'].shape[0]} frames: give the reference outputs of "
                                  "these geometries, or leave --reference out to migrate without the comparison")
        check_reference_shapes(ref, key.removesuffix("energy"), geoms["N"], reference_file)
        check_reference_finite(ref, key.removesuffix("energy"), geoms["N"], reference_file)
    logger.info("geometries: %s; original outputs: %s", geometry_file, reference_file)
    report = migration_report(migration, geoms, ref)
    report["geometry_file"] = None if geometry_file is None else str(geometry_file)
    report["reference_file"] = None if ref is None else str(reference_file)
    summary = (report["comparison"] or {}).get("summary", {})
    if summary.get("network_identical") is False:
        raise MigrationMismatchError(
            f"the migrated network does not reproduce the original's network energies "
            f"(max |ΔE_NN| = {summary['max_abs_delta_network_eV']:.3g} eV); refusing to write {new}"
        )
    metadata = dict(migration.metadata)
    metadata["legacy"] = {**metadata["legacy"], "migration_summary": summary}
    target = save_checkpoint(new, migration.model, migration.params, metadata, overwrite=overwrite,
                             companions=(REPORT_FILE,))
    report["checkpoint"] = str(target)
    try:
        replace_text(target / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False))
    except OutputWriteError as error:
        raise OutputWriteError(f"{error}; the migrated checkpoint {target} is complete, only its report is missing: "
                               "free space and migrate again with --overwrite", error.cause) from error.cause
    return report


def check_reference_finite(reference: dict, prefix: str, counts: np.ndarray, path) -> None:
    """Refuse original-code outputs (energies in eV, forces in eV/Å, charges in e) that are not numbers or hold NaN
    or Inf on a real atom of a geometry: compared, they would read as a network that does not reproduce the
    original. Per-atom outputs are checked on the first ``counts[k]`` atoms of geometry ``k`` (the rest is padding).
    The shapes must have passed :func:`check_reference_shapes`.

    Raises:
      CheckpointError: naming the file, the key and the geometries.
    """
    for name in (*REFERENCE_SHAPES, "repulsion"):
        if prefix + name not in reference:
            continue
        values = np.asarray(reference[prefix + name])
        if values.dtype.kind not in "biuf":
            raise CheckpointError(f"reference file {path}: {prefix + name!r} holds {values.dtype} values, not "
                                  "numbers")
        per_atom = values.ndim >= 2 and (name == "repulsion" or REFERENCE_SHAPES[name][:1] == ("atoms",))
        bad = [k for k in range(len(counts))
               if not np.isfinite(values[k, : int(counts[k])] if per_atom else values[k]).all()]
        if bad:
            raise CheckpointError(
                f"reference file {path}: {prefix + name!r} holds NaN or Inf at geometr{'y' if len(bad) == 1 else 'ies'}"
                f" {', '.join(map(str, bad))}: reference outputs must be finite (the file is damaged, or the original "
                "model had diverged); give finite ones, or pass --geometries without --reference to migrate without "
                "the comparison")


def check_new_path(new, overwrite: bool) -> None:
    """Refuse, before any work, a ``new`` that exists (unless ``overwrite``), is a training run's checkpoint (its
    ``best``/``latest`` or ``checkpoints/epoch-NNNN``), or cannot be created (it lies below a file or in a directory
    that is not writable)."""
    target = absolute_path(new)
    if target.exists() and not overwrite:
        raise OutputPathError(f"{target} exists; pass --overwrite to replace it (only a checkpoint is replaced) "
                              "or choose another NEW")
    if target.exists() and not is_checkpoint(target):
        raise OutputPathError(f"refusing to overwrite {target}: it is not a physnetjax checkpoint")
    check_not_a_run_checkpoint(new, what="NEW")
    check_directory_creatable(target, what="NEW")


class MigrationMismatchError(CheckpointError):
    """The migrated network does not reproduce the original's network energies (nothing was written)."""


@cli_main("python -m physnetjax.migrate")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging("python -m physnetjax.migrate", args.verbose)
    from rich.console import Console

    console = Console()
    try:
        report = migrate(args.old, args.new, weights=args.weights, geometries=args.geometries,
                         reference=args.reference, overwrite=args.overwrite, allow_pickle=args.allow_pickle)
    except MigrationMismatchError as error:
        print(f"python -m physnetjax.migrate: {error}", file=sys.stderr)
        return EXIT_VERDICT
    render(report, console)
    print_line(console, f"Wrote {report['checkpoint']} and {Path(report['checkpoint']) / REPORT_FILE}")
    return EXIT_OK


if __name__ == "__main__":
    exit_process(main())
