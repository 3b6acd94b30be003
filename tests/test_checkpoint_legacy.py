"""Legacy checkpoints of the original physnetjax: detection, attribute quirks, exact network.

Fixtures (tests/data/legacy/<variant>/, copied from ../shared/fixtures/old_checkpoints, see
its README): ``epoch-30/`` was written by the original ``train_model`` (JaxPycharmm @ c62e804,
jax 0.4.34 / flax 0.10.0 / orbax 0.7.0). ``reference_outputs.npz`` was produced by the original
code on the 5 geometries of ``geometries.npz``: ``params, model = get_params_model(epoch_dir,
natoms)`` and ``model.apply(params, Z, R, dst_idx, src_idx)`` with ``dst_idx, src_idx =
e3x.ops.sparse_pairwise_indices(N)`` — one molecule, all N(N−1) ordered pairs, no padding, fp32.
``energy_no_pair_terms`` is ``EF(**attrs, charges=False, zbl=False).apply(params, ...)`` with the
raw ``params``; ``charges`` are the original's (uncorrected) charges with the raw params, and the
``ema_*`` keys are the same outputs with ``ema_params``. The tests evaluate the migrated model on
that same graph.
"""

import gc
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import e3x
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from physnetjax import load_checkpoint
from physnetjax.checkpoint import CheckpointError, migrate_legacy
from physnetjax.checkpoint.legacy import ZBL_UNIVERSAL, parse_attributes, read_legacy

LEGACY = Path(__file__).parent / "data" / "legacy"
VARIANTS = ("A", "B", "C", "C_synthD")
EPS32 = float(np.finfo(np.float32).eps)
ULPS = 8
"""float32 tolerance: 8 ulps of the sum of magnitudes entering a quantity."""

APPLY = jax.jit(lambda model, params, z, r, dst, src: model.apply(params, z, r, dst, src), static_argnums=0)


@pytest.fixture(scope="module")
def migrations():
    return {(v, w): migrate_legacy(LEGACY / v, weights=w) for v in VARIANTS for w in ("raw", "ema")}


@pytest.fixture(scope="module")
def outputs(migrations):
    """Migrated model on the reference geometries, on the original's graph (all pairs, one molecule)."""
    results = {}
    for (variant, weights), migration in migrations.items():
        geometries = np.load(LEGACY / variant / "geometries.npz")
        per_geometry = []
        for z, r, n in zip(geometries["Z"], geometries["R"], geometries["N"]):
            dst, src = e3x.ops.sparse_pairwise_indices(int(n))
            assert r.dtype == np.float32
            out = APPLY(migration.model, migration.params, z[:n], r[:n], dst, src)
            per_geometry.append({k: None if v is None else np.asarray(v) for k, v in out.items()})
        results[variant, weights] = per_geometry
    return results


@pytest.mark.parametrize("variant", VARIANTS)
def test_fixture_loads_with_warning(variant):
    with pytest.warns(UserWarning, match="legacy physnetjax checkpoint"):
        model, params, metadata = load_checkpoint(LEGACY / variant, with_metadata=True)
    expected = {"A": (2, 2, False, False), "B": (2, 2, False, True), "C": (1, 3, True, True),
                "C_synthD": (1, 3, True, True)}[variant]
    assert (model.max_degree, model.num_iterations, model.charges, model.zbl) == expected
    assert model.features == 32 and model.cutoff == 6.0 and model.efa is False
    assert metadata["legacy"]["epoch"] == 30 and metadata["legacy"]["weights"] == "ema_params"
    assert params["params"]["Embed_0"]["embedding"].dtype == np.float32


@pytest.mark.parametrize("variant", VARIANTS)
def test_network_energy_equals_original_raw_weights(variant, outputs):
    """Σ_i E_i^NN of the migrated model = the original's ``energy_no_pair_terms`` (raw params)."""
    reference = np.load(LEGACY / variant / "reference_outputs.npz")
    for k, out in enumerate(outputs[variant, "raw"]):
        tolerance = ULPS * EPS32 * np.abs(out["atomic_energies"]).sum()
        assert abs(float(out["nn_energy"][0]) - float(reference["energy_no_pair_terms"][k])) <= tolerance


@pytest.mark.parametrize("variant", VARIANTS)
def test_network_energy_equals_original_ema_weights(variant, outputs):
    """With ema_params the original stored no pair-free energy, so it is recovered as
    E − Σ_i repulsion_i − electrostatics (the original's total is exactly that sum)."""
    reference = np.load(LEGACY / variant / "reference_outputs.npz")
    energy = reference["ema_energy"].astype(np.float64)
    repulsion = reference["ema_repulsion"].astype(np.float64).sum(axis=1)
    electrostatics = (reference["ema_electrostatics"][:, 0].astype(np.float64)
                      if "ema_electrostatics" in reference.files else np.zeros_like(energy))
    for k, out in enumerate(outputs[variant, "ema"]):
        magnitude = np.abs(out["atomic_energies"]).sum() + abs(energy[k]) + abs(repulsion[k]) + abs(electrostatics[k])
        old_network = energy[k] - repulsion[k] - electrostatics[k]
        assert abs(float(out["nn_energy"][0]) - old_network) <= ULPS * EPS32 * magnitude


@pytest.mark.parametrize("variant", ("C", "C_synthD"))
@pytest.mark.parametrize("weights", ("raw", "ema"))
def test_raw_charges_equal_original(variant, weights, outputs):
    """The original returned uncorrected charges; they equal the migrated ``raw_charges``."""
    reference = np.load(LEGACY / variant / "reference_outputs.npz")
    key = "charges" if weights == "raw" else "ema_charges"
    for k, out in enumerate(outputs[variant, weights]):
        old = reference[key][k]
        np.testing.assert_allclose(out["raw_charges"], old, rtol=0, atol=ULPS * EPS32 * max(1.0, np.abs(old).max()))
    if variant == "C_synthD":
        assert np.abs(reference[key]).max() > 0.05, "C_synthD must exercise non-zero charges"


def test_weights_come_from_ema_or_params_never_the_stale_model(migrations):
    _, raw = read_legacy(LEGACY / "C_synthD")
    for weights, entry in (("ema", "ema_params"), ("raw", "params")):
        migrated = migrations["C_synthD", weights]
        assert migrated.weights == entry
        for a, b in zip(jax.tree_util.tree_leaves(raw[entry]), jax.tree_util.tree_leaves(migrated.params)):
            np.testing.assert_array_equal(np.asarray(b), a)
    stale = jax.tree_util.tree_leaves(raw["model"]["params"])
    used = jax.tree_util.tree_leaves(migrations["C_synthD", "ema"].params)
    assert max(float(np.abs(np.asarray(u) - s).max()) for u, s in zip(used, stale)) > 0.1


def test_every_parameter_is_accounted_for(migrations):
    for (variant, _), migration in migrations.items():
        _, raw = read_legacy(LEGACY / variant)
        legacy_count = len(jax.tree_util.tree_leaves(raw[migration.weights]))
        assert sum(r.source is not None for r in migration.parameters) == legacy_count
        assert all(r.action == "copied unchanged" for r in migration.parameters)


def test_run_directory_uses_latest_epoch(tmp_path):
    """A run dir ``name-uuid/`` under a path containing 'tmp' (the original's get_last failed there)."""
    run = tmp_path / "tmp_runs" / "variant-0b1c2d3e-aaaa-bbbb-cccc-1234567890ab"
    run.mkdir(parents=True)
    shutil.copytree(LEGACY / "B" / "epoch-30", run / "epoch-7")
    shutil.copytree(LEGACY / "A" / "epoch-30", run / "epoch-12")
    (run / "epoch-13.orbax-checkpoint-tmp-99").mkdir()
    migration = migrate_legacy(run)
    assert migration.source.name == "epoch-12"
    assert migration.model.zbl is False


def _write_legacy(directory: Path, raw: dict, attributes: dict) -> Path:
    tree = {"model_attributes": attributes, "params": raw["params"], "ema_params": raw["ema_params"], "epoch": 1}
    with ocp.PyTreeCheckpointer() as checkpointer:  # closed here, not by the garbage collector after its loop
        checkpointer.save(directory.resolve(), tree)
    return directory


@pytest.mark.parametrize("variant", ("A", "C"))
def test_string_valued_attributes(variant, tmp_path, migrations):
    """Earliest format: every attribute stored as text; "False" must stay False."""
    _, raw = read_legacy(LEGACY / variant)
    attributes = {k: str(v) for k, v in raw["model_attributes"].items()}
    assert attributes["efa"] == "False" and attributes["cutoff"] == "6.0"
    path = _write_legacy(tmp_path / "epoch-1", raw, attributes)
    with pytest.warns(UserWarning):
        model, params = load_checkpoint(path)
    reference = migrations[variant, "ema"]
    assert model == reference.model
    assert model.efa is False and model.debug is False
    assert model.zbl is (variant == "C") and model.charges is (variant == "C")
    for a, b in zip(jax.tree_util.tree_leaves(reference.params), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_zero_dimensional_array_attributes(tmp_path, migrations):
    _, raw = read_legacy(LEGACY / "B")
    attributes = {k: np.asarray(v) for k, v in raw["model_attributes"].items()}
    path = _write_legacy(tmp_path / "epoch-3", raw, attributes)
    _, restored = read_legacy(path)
    assert isinstance(restored["model_attributes"]["zbl"], np.ndarray)
    assert migrate_legacy(path).model == migrations["B", "ema"].model


def test_attribute_parsing_quirks():
    base = {"features": "32", "max_degree": np.int32(2), "num_iterations": 2.0, "num_basis_functions": "16",
            "cutoff": "6", "n_res": "2", "charges": "false", "zbl": np.array(True), "debug": "True",
            "natoms": "None"}
    kwargs, record = parse_attributes(base)
    assert kwargs["charges"] is False and kwargs["zbl"] is True and kwargs["cutoff"] == 6.0
    assert kwargs["max_atomic_number"] == 118 and kwargs["efa"] is False
    assert "debug" not in kwargs and record["natoms"]["use"].startswith("accepted")
    with pytest.raises(CheckpointError, match="efa=True"):
        parse_attributes(dict(base, efa="True"))
    with pytest.raises(CheckpointError, match="n_res=-1"):
        parse_attributes(dict(base, n_res=np.array(-1)))
    with pytest.raises(CheckpointError, match="charges must be a boolean, found 'maybe'"):
        parse_attributes(dict(base, charges="maybe"))
    with pytest.raises(CheckpointError, match="features must be an integer"):
        parse_attributes(dict(base, features="32.5"))
    with pytest.raises(CheckpointError, match="lack cutoff"):
        parse_attributes({k: v for k, v in base.items() if k != "cutoff"})


def test_pickle_needs_flag_and_old_versions_without_bias_or_repulsion(tmp_path, migrations):
    """Older versions: no energy_bias, non-trainable ZBL (no repulsion/*); here as a pickle."""
    _, raw = read_legacy(LEGACY / "B")
    weights = {"params": {k: v for k, v in raw["ema_params"]["params"].items()
                          if k not in ("energy_bias", "repulsion")}}
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps({"model_attributes": raw["model_attributes"], "ema_params": weights}))
    with pytest.raises(CheckpointError, match="allow_pickle"):
        load_checkpoint(path)
    migration = migrate_legacy(path, allow_pickle=True)
    assert migration.model.use_energy_bias is False and migration.model.zbl is True
    assert "energy_bias" not in migration.params["params"]
    for name, value in ZBL_UNIVERSAL.items():
        np.testing.assert_array_equal(np.asarray(migration.params["params"]["repulsion"][name]), value)
    assert sum("universal ZBL value" in r.action for r in migration.parameters) == 4
    assert any("energy_bias" in note for note in migration.notes)


def test_legacy_weight_layouts_and_their_refusals(tmp_path, migrations, caplog):
    """Pickled variants of fixture B: only raw params (used for weights="ema", with a note and a warning), weights
    without the "params" collection level, an extra array the model does not use (recorded, not copied); and the
    refusals: no weights at all, no model_attributes, a pickle of no dict, an embedding of another shape."""
    _, raw = read_legacy(LEGACY / "B")
    attributes, ema = raw["model_attributes"], raw["ema_params"]
    reference = migrations["B", "ema"]

    def migrated(content, name):
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(pickle.dumps(content))
        return migrate_legacy(path, allow_pickle=True)

    with caplog.at_level(logging.WARNING, logger="physnetjax.checkpoint.legacy"):
        raw_only = migrated({"model_attributes": attributes, "params": ema}, "raw_only")
    assert "legacy checkpoint has no ema_params; using params" in caplog.text
    assert "the checkpoint has no ema_params; the raw training params were used" in raw_only.notes
    unwrapped = migrated({"model_attributes": attributes, "ema_params": ema["params"]}, "unwrapped")
    extra = migrated({"model_attributes": attributes,
                      "ema_params": {"params": {**ema["params"], "Unused_0": {"kernel": np.ones((2, 2))}}}}, "extra")
    for migration in (raw_only, unwrapped, extra):
        assert migration.model == reference.model
        for a, b in zip(jax.tree_util.tree_leaves(migration.params), jax.tree_util.tree_leaves(reference.params),
                        strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    (unused,) = [r for r in extra.parameters if r.target is None]
    assert unused.source == "ema_params/params/Unused_0/kernel" and unused.action.startswith("not used")
    with pytest.raises(CheckpointError, match=r"has no ema_params entry .*stale 'model' TrainState"):
        migrated({"model_attributes": attributes, "model": {}}, "no_weights")
    with pytest.raises(CheckpointError, match=r"has no model_attributes \(keys: \['ema_params'\]\)"):
        migrated({"ema_params": ema}, "no_attributes")
    with pytest.raises(CheckpointError, match="does not hold a dict \\(found list\\)"):
        migrated([attributes], "a_list")
    embedding = np.asarray(ema["params"]["Embed_0"]["embedding"])
    shrunk = {**ema["params"], "Embed_0": {"embedding": embedding[..., :4]}}
    with pytest.raises(CheckpointError, match="the ema_params do not fit the model its attributes describe: "
                                              ".*Embed_0/embedding"):
        migrated({"model_attributes": attributes, "ema_params": {"params": shrunk}}, "shrunk")


def damage_data_file(epoch: Path, damage: str) -> None:
    """Delete or truncate the largest data file of the legacy checkpoint ``epoch``, or truncate its manifest."""
    if damage == "truncate manifest":
        manifest = epoch / "manifest.ocdbt"
        manifest.chmod(0o644)
        manifest.write_bytes(manifest.read_bytes()[:50])
        return
    victim = max((p for p in (epoch / "ocdbt.process_0" / "d").iterdir()), key=lambda p: p.stat().st_size)
    if damage == "delete":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:100])


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage, first", [("delete", "ema_params.params.Dense_0.0+.kernel/0.0"),
                                           pytest.param("truncate", "ema_params.params.Dense_0.0+.kernel/0.0",
                                                        marks=pytest.mark.slow),
                                           ("truncate manifest", "best_loss/.zarray")])
def test_corrupted_legacy_checkpoint_ends_every_read(damage, first, tmp_path):
    """On main the first failed read ended the restore (or the metadata reads before it) and closed orbax's event
    loop while the checkpoint's other reads still ran in tensorstore's threads: each then posted its result to the
    closed loop ("RuntimeError: Event loop is closed" printed from that thread, or here an unraisable-exception
    warning, made an error), and the value named in the error was whichever read failed first."""
    epoch = shutil.copytree(LEGACY / "A" / "epoch-30", tmp_path / "epoch-30")
    damage_data_file(epoch, damage)
    for _ in range(4):  # on main about one load in two left reads running
        with pytest.raises(CheckpointError, match=rf"corrupted or unreadable: [A-Z_]+: .*Error reading "
                                                  rf"\"{re.escape(first)}\""):
            load_checkpoint(epoch)
    time.sleep(1.0)  # reads left running would end (and post to the closed loop) within this
    gc.collect()


@pytest.mark.slow
@pytest.mark.parametrize("command", ("check", "migrate"))
def test_cli_on_a_checkpoint_with_a_deleted_data_file_prints_one_line(command, tmp_path):
    """On main ``python -m physnetjax.check`` or ``migrate`` printed its one-line error and then, in 22 of 48 runs,
    "RuntimeError: Event loop is closed" tracebacks from tensorstore's threads."""
    epoch = shutil.copytree(LEGACY / "A" / "epoch-30", tmp_path / "epoch-30")
    damage_data_file(epoch, "delete")
    argv = [sys.executable, "-m", f"physnetjax.{command}", str(epoch)] + ([str(tmp_path / "new")] * (
        command == "migrate"))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]),
               JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    for _ in range(5):
        run = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
        assert run.returncode == 2
        assert run.stderr.startswith(f"python -m physnetjax.{command}: error: legacy checkpoint {epoch} is corrupted")
        assert run.stderr.count("\n") == 1 and run.stderr.endswith("\n"), run.stderr


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage, cause", [
    ("truncate _METADATA", r"_METADATA \(5000 bytes\), the index of the saved arrays, is not valid JSON \(Unterminated "
                           r"string .*\): the file is truncated or overwritten"),
    ("empty _METADATA", r"_METADATA \(0 bytes\), the index of the saved arrays, is not valid JSON"),
    ("list _METADATA", r"_METADATA, the index of the saved arrays, has no tree_metadata: the file is overwritten"),
    ("truncate manifest.ocdbt", r"DATA_LOSS: .*manifest.ocdbt\": Error decoding manifest: Length in header \(116\) "
                                r"does not match actual length \(50\); at byte 12 \(a file of the checkpoint is "
                                r"truncated, missing or overwritten: copy the checkpoint again from where it was "
                                r"saved\)$"),
])
def test_damaged_legacy_index_names_the_file_without_orbax_noise(damage, cause, tmp_path, caplog):
    """A damaged _METADATA or manifest read as "'NoneType' object has no attribute 'tree'" after an absl WARNING
    (orbax logs its own error and returns no metadata) and, for the manifest, asyncio tracebacks."""
    epoch = shutil.copytree(LEGACY / "A" / "epoch-30", tmp_path / "epoch-30")
    action, name = damage.split()
    file = epoch / name
    file.chmod(0o644)
    file.write_bytes({"truncate": file.read_bytes()[:5000 if name == "_METADATA" else 50], "empty": b"",
                      "list": b"[1, 2]"}[action])
    with caplog.at_level("DEBUG"):
        with pytest.raises(CheckpointError) as raised:
            read_legacy(epoch)
        # orbax's other failed reads of the manifest log this when their tasks are collected (often at exit)
        for where in (epoch, tmp_path / "elsewhere") if name == "manifest.ocdbt" else ():
            logging.getLogger("asyncio").error("Task exception was never retrieved\nfuture: <Task ... local file "
                                               "\"%s/\"')>", where)
    message = str(raised.value)
    assert message.startswith(f"legacy checkpoint {epoch} is corrupted or unreadable: ")
    assert re.search(cause, message) and "tensorstore_spec" not in message and "NoneType" not in message
    noise = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert noise == ([] if name == "_METADATA" else [noise[-1]]), caplog.text
    assert name == "_METADATA" or str(tmp_path / "elsewhere") in noise[-1]


@pytest.mark.parametrize("attribute, value, message", [
    ("cutoff", float("nan"), "legacy attribute cutoff must be a finite number, found nan"),
    ("cutoff", "inf", "legacy attribute cutoff must be a finite number, found 'inf'"),
    ("cutoff", np.float32(-np.inf), "legacy attribute cutoff must be a finite number, found -inf"),
    ("cutoff", -6.0, "legacy attribute cutoff must be larger than 0 (Å), found -6.0"),
    ("cutoff", "0", "legacy attribute cutoff must be larger than 0 (Å), found 0.0"),
    ("total_charge", np.array(np.nan), "legacy attribute total_charge must be a finite number, found nan"),
], ids=("cutoff nan", "cutoff inf text", "cutoff -inf float32", "cutoff negative", "cutoff zero text",
        "total_charge nan array"))
def test_non_finite_or_non_positive_real_attributes_are_named(tmp_path, attribute, value, message):
    """A pickled checkpoint with cutoff = nan was refused as "zbl_cutoff must be larger than 0 and finite (Å) when
    given, received nan": a key the legacy checkpoint does not have; later without naming the checkpoint."""
    _, raw = read_legacy(LEGACY / "A")
    path = tmp_path / "attributes.pkl"
    path.write_bytes(pickle.dumps({**raw, "model_attributes": {**raw["model_attributes"], attribute: value}}))
    with pytest.raises(CheckpointError, match=f"^legacy checkpoint {re.escape(str(path))}: {re.escape(message)}$"):
        migrate_legacy(path, allow_pickle=True)


@pytest.mark.parametrize("content, weights, entry, found", [
    ({"ema_params": "x"}, "ema", "ema_params", "str"),
    ({"ema_params": ["x"]}, "raw", None, None),  # the raw params are used and fine
    ({"params": 3, "ema_params": None}, "ema", "params", "int"),  # no EMA weights: the raw ones are read
    ({"params": np.zeros(3)}, "raw", "params", "ndarray"),
], ids=("ema str", "raw, ema list unread", "ema absent, params int", "raw array"))
def test_weights_that_are_no_parameter_tree_are_named_with_their_type(tmp_path, content, weights, entry, found):
    """``ema_params = 'x'`` was refused as "has no ema_params entry (keys: ['ema_params', ...])", which contradicts
    itself; the entry exists but is no dict of arrays."""
    _, raw = read_legacy(LEGACY / "A")
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({**raw, **content}))
    if entry is None:
        assert migrate_legacy(path, weights=weights, allow_pickle=True).weights == "params"
        return
    with pytest.raises(CheckpointError, match=re.escape(
            f"legacy checkpoint {path}: {entry} is not a parameter tree (found {found}, expected a dict of arrays)")):
        migrate_legacy(path, weights=weights, allow_pickle=True)


def test_a_pickle_of_code_that_cannot_be_imported_is_named(tmp_path):
    """A pickle naming a class of a package that is not installed (or a name damaged into one) is refused naming the
    file and the import that failed, not as an internal error."""
    path = tmp_path / "other.pkl"
    path.write_bytes(b"cno_such_module_of_physnetjax\nThing\n.")  # protocol 0: GLOBAL module.Thing
    with pytest.raises(CheckpointError, match=re.escape(
            f"legacy pickle {path} refers to code that cannot be imported here (ModuleNotFoundError: No module named "
            "'no_such_module_of_physnetjax'): it is corrupted or was written with packages this environment lacks")):
        read_legacy(path, allow_pickle=True)
