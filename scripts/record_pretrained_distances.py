"""Record the training distance domain (``trained_distances``) in a shipped model trained before the trainer wrote it.

The domain is computed as the trainer computes it (:meth:`physnetjax.distance_domain.DistanceDomain.of_frames` over
the training part of :func:`physnetjax.data.split.random_split` with the run's split settings, at the model's cutoff)
from the model's own data files, and only once those frames are shown to be the run's:

* the validation part of the split reproduces the run's recorded validation force MAE (and dipole MAE, for a charge
  model) to :data:`METRIC_TOLERANCE` (another seed's split is off by 0.3-18 % on CO2); energies are not compared,
  float32 absolute energies of CO2 round at the size of its 3e-5 eV MAE;
* where the checkpoint records the digests of its training frames (``training_frames``), they are those of the
  split's training part, every one.

Files whose SHA-256 differs from the run's ``data_sha256`` are named (a regenerated ``.npz`` stores the time it
was written, so its bytes differ where its frames do not). The record goes into the checkpoint's ``metadata``
beside the others added after training; ``config.json`` gets its new ``config_sha256``, and the parameter files
are not touched, so their recorded SHA-256 stay valid. Run from the repository root::

    python scripts/record_pretrained_distances.py ethanol
    python scripts/record_pretrained_distances.py co2 --data ../shared/data/co2_gfn2_500K.npz
    python scripts/record_pretrained_distances.py ethanol_ir --data physnetjax/data/ethanol_gfn2.npz \\
        ../shared/data/ethanol_gfn2_500K.npz nm300.npz nm100.npz

(``nm300.npz`` and ``nm100.npz``: the commands of ``physnetjax/pretrained/ethanol_ir/README.md``.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import jax
import numpy as np

from physnetjax import load_checkpoint
from physnetjax.checkpoint.format import CONFIG_CHECKSUM_KEY, CONFIG_FILE, config_checksum, read_config
from physnetjax.data import bundled_dataset_path, load_dataset
from physnetjax.data.fingerprint import data_fingerprint
from physnetjax.data.frame_digests import FrameRecord, dataset_digests
from physnetjax.data.split import random_split
from physnetjax.distance_domain import TRAINED_DISTANCES_KEY, DistanceDomain
from physnetjax.eval.evaluate import evaluate
from physnetjax.eval.predictions import predict_dataset
from physnetjax.pretrained import example_model_path

METRIC_TOLERANCE = 1e-3
"""Largest relative difference from the recorded validation MAEs (the trainer's float32 batches against
:func:`~physnetjax.eval.predictions.predict_dataset`'s: 6e-4 on CO2 forces, below 1e-6 on the ethanol models)."""


def training_frames(name: str, paths) -> tuple:
    """(model, params, metadata, the run's training frames as a Dataset) of shipped model ``name`` read from its data
    files ``paths`` (None: the bundled set, as the trainer defaults); SystemExit when they are not the run's."""
    model, params, metadata = load_checkpoint(example_model_path(name), with_metadata=True)
    run = metadata["source_metadata"]
    settings, units = run["train_config"], run["data_units"]
    paths = [str(p) for p in paths or [bundled_dataset_path()]]
    if settings["split_file"] is not None or len(paths) != len(run["data"]):
        sys.exit(f"{name}: the run split {len(run['data'])} file(s) {run['data']} with "
                 f"split_file={settings['split_file']}; give its files, in its order, with --data")
    data = load_dataset(paths, energy_unit=units["energy"], force_unit=units["force"], dipole_unit=units["dipole"],
                        force_sign=units.get("force_sign", 1))
    fingerprints = zip(data_fingerprint(paths).items(), run.get("data_sha256", {}).items())
    for (path, sha), (recorded, recorded_sha) in fingerprints:
        if sha != recorded_sha:
            print(f"{name}: {path} is not byte for byte the run's {recorded} (SHA-256 differs)")
    split = random_split(len(data), settings["valid"], settings["test"], settings["seed"], settings["train"])
    valid = data.subset(split["valid"])
    metrics = evaluate(valid, predict_dataset(model, params, valid)).metrics
    for key in ("forces_mae", "dipole_mae"):
        recorded = run["metrics"].get(f"valid_{key}")
        if recorded is None:
            continue
        if abs(metrics[key] / recorded - 1.0) > METRIC_TOLERANCE:
            sys.exit(f"{name}: validation {key} {metrics[key]:.9g} on this split, the run recorded {recorded:.9g}: "
                     "these are not the run's frames or split")
        print(f"{name}: validation {key} {metrics[key]:.9g} (recorded {recorded})")
    recorded_frames = FrameRecord.from_metadata(metadata)
    if recorded_frames is not None:
        mine = FrameRecord.of(dataset_digests(data, split["train"]))
        if not (recorded_frames.complete and np.array_equal(mine.digests, recorded_frames.digests)):
            sys.exit(f"{name}: the digests of the split's {mine.frames} training frames are not the "
                     f"{recorded_frames.frames} the checkpoint records")
        print(f"{name}: the {mine.frames} training frames are those the checkpoint records")
    return model, params, metadata, data.subset(split["train"])


def record_distances(name: str, paths) -> None:
    """Write the training distance domain of shipped model ``name`` into its ``config.json`` (parameters untouched),
    then load it again and check that its parameters are those it had."""
    model, params, metadata, train = training_frames(name, paths)
    domain = DistanceDomain.of_frames(train.Z, train.R, train.N, model.cutoff, train.cell)
    path = example_model_path(name)
    config = read_config(path)
    config["metadata"] = {**metadata, TRAINED_DISTANCES_KEY: domain.to_metadata()}
    config[CONFIG_CHECKSUM_KEY] = config_checksum(config)
    handle, temporary = tempfile.mkstemp(prefix=f".{CONFIG_FILE}.", dir=path)
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(config, stream, indent=2, ensure_ascii=False)
    os.replace(temporary, path / CONFIG_FILE)
    _, reloaded, reread = load_checkpoint(path, with_metadata=True)
    same = jax.tree_util.tree_map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))), params, reloaded)
    assert all(jax.tree_util.tree_leaves(same)) and reread[TRAINED_DISTANCES_KEY] == domain.to_metadata()
    print(f"{name}: {len(train)} training frames, cutoff {model.cutoff:g} Å: {json.dumps(domain.to_metadata())}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="shipped model (physnetjax/pretrained/NAME/model)")
    parser.add_argument("--data", nargs="+", metavar="FILE", help="the run's data files, in its order (default: the "
                        "bundled ethanol set, as the trainer)")
    args = parser.parse_args(argv)
    record_distances(args.name, args.data)


if __name__ == "__main__":
    main()
