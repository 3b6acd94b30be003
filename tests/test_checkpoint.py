"""The physnetjax checkpoint format: round trip, train state, atomic writes, clear errors."""

import json
import re
import shutil
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import perturbed_params
from physnetjax import PhysNet, init_params, load_checkpoint, load_train_state, save_checkpoint
from physnetjax.checkpoint import CheckpointError, format as ckformat
from physnetjax.errors import OutputPathError, PhysNetInputWarning
from physnetjax.neighbors import apply_batch, batch_molecules, model_pair_cutoff

MODEL = PhysNet(features=8, max_degree=1, num_iterations=2, n_res=1, charges=True, zbl=True,
                element_energies=tuple(-0.5 * z for z in range(119)))
APPLY = jax.jit(apply_batch, static_argnums=0)
METADATA = {"E0s": {"1": -13.6, "8": -2041.3}, "epochs": 12, "note": "Å, eV", "nested": [1, [2.5, None]]}


def energies_and_forces(model, params, molecules):
    z, r = molecules["ethanol"]
    batch = batch_molecules([z], [r], model.cutoff, pair_cutoff=model_pair_cutoff(model), dtype=np.float64)
    out = APPLY(model, params, batch)
    return np.asarray(out["energy"]), np.asarray(out["forces"]), np.asarray(out["charges"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small model with non-trivial (noisy) float64 params, saved once with a train state."""
    params = perturbed_params(init_params(MODEL, 3), scale=0.3, seed=1)
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
    tx = optax.chain(optax.clip_by_global_norm(10.0), optax.amsgrad(1e-3))
    train_state = {"opt_state": tx.init(params), "ema_params": params, "epoch": 7, "best_loss": 0.25,
                   "key": jax.random.PRNGKey(5), "typed_key": jax.random.key(9)}
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model", MODEL, params, METADATA,
                           train_state=train_state)
    return path, params, train_state


@pytest.fixture(scope="module")
def fresh_params(trained):
    return trained[1]


def test_round_trip_is_bit_for_bit(trained, molecules):
    path, params, _ = trained
    model, loaded, metadata = load_checkpoint(path, with_metadata=True)
    assert model == MODEL
    assert metadata == METADATA
    flat, flat_loaded = jax.tree_util.tree_leaves_with_path(params), jax.tree_util.tree_leaves_with_path(loaded)
    assert [p for p, _ in flat] == [p for p, _ in flat_loaded]
    for (_, a), (_, b) in zip(flat, flat_loaded):
        assert b.dtype == a.dtype == jnp.float64
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
    before = energies_and_forces(MODEL, params, molecules)
    after = energies_and_forces(model, loaded, molecules)
    for x, y in zip(before, after):
        assert x.dtype == y.dtype == np.float64
        np.testing.assert_array_equal(x, y)
    assert np.abs(before[2]).max() > 0.0, "charges must be non-trivial for the test to mean anything"


def test_config_json_contents(trained):
    path, _, _ = trained
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    assert config["format_version"] == ckformat.SINGLE_MODEL_FORMAT_VERSION == 1  # single models stay version 1
    assert config["units"] == {"length": "Å", "energy": "eV", "forces": "eV/Å", "charge": "e", "dipole": "e·Å"}
    assert config["model"]["element_energies"][8] == -4.0
    assert any(name.startswith("params/") for name in config["files"])
    assert any(name.startswith("train_state/") for name in config["files"])


def test_train_state_restores_into_target(trained):
    path, params, state = trained
    restored = load_train_state(path, target=state)
    assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(state)
    assert isinstance(restored["opt_state"][1][0], type(state["opt_state"][1][0]))
    assert restored["epoch"] == 7 and restored["best_loss"] == 0.25
    assert jax.dtypes.issubdtype(restored["typed_key"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(restored["typed_key"]), jax.random.key_data(state["typed_key"]))
    for a, b in zip(jax.tree_util.tree_leaves(state["opt_state"]), jax.tree_util.tree_leaves(restored["opt_state"])):
        assert isinstance(b, jax.Array) and a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    raw = load_train_state(path)
    assert raw["epoch"] == 7 and set(raw["opt_state"]) == {"0", "1"}


def test_train_state_target_mismatch(trained):
    path, _, state = trained
    wrong = dict(state, key=jnp.zeros(3, dtype=jnp.uint32))
    with pytest.raises(CheckpointError, match="shape"):
        load_train_state(path, target=wrong)


def test_missing_train_state(tmp_path, fresh_params):
    path = save_checkpoint(tmp_path / "m", MODEL, fresh_params)
    with pytest.raises(CheckpointError, match="no train state"):
        load_train_state(path)
    assert load_checkpoint(path, with_metadata=True)[2] == {}


def test_load_checkpoint_returns_model_and_params(trained):
    """DESIGN.md's interface: ``load_checkpoint(path) -> (model, params)``; the metadata only on request."""
    path, params, _ = trained
    pair = load_checkpoint(path)
    assert len(pair) == 2 and pair[0] == MODEL
    assert jax.tree_util.tree_structure(pair[1]) == jax.tree_util.tree_structure(params)
    assert load_checkpoint(path, with_metadata=True)[2] == METADATA


def test_relative_path_and_overwrite(tmp_path, monkeypatch, trained):
    _, params, _ = trained
    monkeypatch.chdir(tmp_path)
    path = save_checkpoint("rel/ckpt", MODEL, params, {"run": 1})
    assert path == (tmp_path / "rel" / "ckpt").resolve()
    assert load_checkpoint("rel/ckpt", with_metadata=True)[2] == {"run": 1}
    with pytest.raises(FileExistsError, match="overwrite"):
        save_checkpoint("rel/ckpt", MODEL, params, {"run": 2})
    save_checkpoint("rel/ckpt", MODEL, params, {"run": 2}, overwrite=True)
    assert load_checkpoint("rel/ckpt", with_metadata=True)[2] == {"run": 2}
    assert sorted(p.name for p in (tmp_path / "rel").iterdir()) == ["ckpt"]
    (tmp_path / "precious").mkdir()
    with pytest.raises(CheckpointError, match="not a physnetjax checkpoint"):
        save_checkpoint("precious", MODEL, params, overwrite=True)


def test_overwrite_never_deletes_a_training_run(tmp_path, trained):
    """A run directory has a config.json (its settings) too: overwriting it must refuse and keep every file."""
    _, params, _ = trained
    run = tmp_path / "run"
    save_checkpoint(run / "best", MODEL, params)
    (run / "config.json").write_text('{"epochs": 3}', encoding="utf-8")
    (run / "metrics.csv").write_text("epoch\n1\n", encoding="utf-8")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with pytest.raises(CheckpointError, match=r"besides a checkpoint it holds best, metrics.csv.*training run"):
        save_checkpoint(run, MODEL, params, overwrite=True)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    with pytest.raises(CheckpointError, match=r"not a checkpoint; it looks like a training run directory.*best"):
        load_checkpoint(run)
    extra = save_checkpoint(tmp_path / "ckpt", MODEL, params)
    (extra / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(CheckpointError, match="besides a checkpoint it holds notes.txt"):
        save_checkpoint(extra, MODEL, params, overwrite=True)
    assert (extra / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch, trained):
    _, params, _ = trained
    path = save_checkpoint(tmp_path / "ckpt", MODEL, params, {"version": "old"})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated crash while writing")

    monkeypatch.setattr(ckformat, "_file_table", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, MODEL, params, {"version": "new"}, overwrite=True)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "fresh", MODEL, params)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert load_checkpoint(path, with_metadata=True)[2] == {"version": "old"}


def test_params_that_do_not_fit_are_named(tmp_path, fresh_params):
    inner = dict(fresh_params["params"])
    del inner["energy_bias"]
    with pytest.raises(CheckpointError, match="params/energy_bias: missing"):
        save_checkpoint(tmp_path / "x", MODEL, {"params": inner})
    assert not (tmp_path / "x").exists()


def _with_nan(params):
    inner = dict(params["params"])
    inner["energy_bias"] = jnp.asarray(inner["energy_bias"]).at[0].set(jnp.nan)
    return {"params": inner}


def test_parameters_holding_nan_are_neither_saved_nor_loaded(tmp_path, fresh_params, monkeypatch, capsys):
    """A diverged training's weights are not a model: save refuses them; a checkpoint holding them anyway (written
    by an earlier version, or edited) is refused on loading, naming the array, where every tool would otherwise
    report NaN energies as a geometry's fault."""
    message = r"parameters hold NaN or Inf \(params/energy_bias: 1 of \d+ values\)"
    with pytest.raises(CheckpointError, match="params to save: " + message):
        save_checkpoint(tmp_path / "x", MODEL, _with_nan(fresh_params))
    assert not (tmp_path / "x").exists()
    with monkeypatch.context() as patched:
        patched.setattr(ckformat, "nonfinite_parameters", lambda params: [])
        save_checkpoint(tmp_path / "x", MODEL, _with_nan(fresh_params))
    with pytest.raises(CheckpointError, match=f"checkpoint {re.escape(str(tmp_path / 'x'))}: {message}"):
        load_checkpoint(tmp_path / "x")
    from physnetjax.eval.cli import main as eval_main
    data = Path(__file__).parent / "data" / "train_ethanol64.npz"
    assert eval_main(["--checkpoint", str(tmp_path / "x"), "--data", str(data), "--out", str(tmp_path / "eval")]) == 2
    assert "parameters hold NaN or Inf" in capsys.readouterr().err


def test_metadata_must_be_json(tmp_path, fresh_params):
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "x", MODEL, fresh_params, {"bad": object()})


@pytest.mark.parametrize("metadata, message", [
    ([1], r"^metadata must be a dict \(a JSON object\), received list$"),  # main: saved, then loaded as corrupted
    ("note", r"^metadata must be a dict \(a JSON object\), received str$"),
    ({1: "a", "1": "b"}, r"^metadata key 1 is a int: keys must be strings"),  # main: loaded back as {"1": "b"}
    ({"runs": [{"epochs": {np.int64(3): 1}}]}, r"^metadata\['runs'\]\[0\]\['epochs'\] key np\.int64\(3\) is a int64"),
])
def test_metadata_that_json_would_not_give_back_is_refused_before_writing(tmp_path, fresh_params, metadata, message):
    with pytest.raises(TypeError, match=message):
        save_checkpoint(tmp_path / "x", MODEL, fresh_params, metadata)
    assert not (tmp_path / "x").exists()


@pytest.fixture()
def copy_of(trained, tmp_path):
    path = shutil.copytree(trained[0], tmp_path / "copy")
    return path


def test_deleted_file_is_reported(copy_of):
    victim = sorted(p for p in (copy_of / "params").rglob("*") if p.is_file())[-1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=f"{victim.name} is missing"):
        load_checkpoint(copy_of)


def test_a_removed_train_state_folder_still_loads_for_inference(copy_of, trained):
    """Deleting RUN/best/train_state to save space made the model unloadable ('file train_state/... is missing');
    now it loads, and only a resume is refused, saying why. One file missing inside train_state/ is still damage."""
    shutil.rmtree(copy_of / "train_state")
    _, params = load_checkpoint(copy_of)
    for loaded, saved in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(trained[1])):
        np.testing.assert_array_equal(loaded, saved)
    with pytest.raises(CheckpointError, match="has no train_state/ folder .*training cannot resume from it"):
        load_train_state(copy_of)


def test_a_file_missing_inside_the_train_state_is_damage(copy_of):
    victim = sorted(p for p in (copy_of / "train_state").rglob("*") if p.is_file())[-1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=f"{victim.name} is missing"):
        load_checkpoint(copy_of)


def test_truncated_file_is_reported(copy_of):
    victim = max((p for p in (copy_of / "params").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(copy_of)


def test_altered_file_is_reported(copy_of):
    victim = max((p for p in (copy_of / "train_state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_train_state(copy_of)


def test_missing_or_broken_config(copy_of):
    (copy_of / "config.json").write_text('{"format_version": 1, "model": {', encoding="utf-8")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(copy_of)
    (copy_of / "config.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(copy_of)


def test_future_format_version(copy_of):
    config = json.loads((copy_of / "config.json").read_text(encoding="utf-8"))
    config["format_version"] = 3
    (copy_of / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(CheckpointError, match="format_version 3.*reads format_version <= 2"):
        load_checkpoint(copy_of)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        load_checkpoint(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="does not exist$"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="weights"):
        load_checkpoint(tmp_path, weights="best")


def test_a_folder_inside_a_checkpoint_names_the_checkpoint(copy_of):
    """--checkpoint RUN/best/params (the orbax folder inside a checkpoint) read as a legacy checkpoint and failed
    with 'legacy checkpoint ... has no model_attributes', not saying to pass the directory above it."""
    with pytest.raises(CheckpointError, match=f"is the params/ folder inside the checkpoint {copy_of}: pass the "
                                              f"checkpoint directory {copy_of} itself"):
        load_checkpoint(copy_of / "params")
    with pytest.raises(CheckpointError, match=f"config.json is the file inside the checkpoint {copy_of}: pass"):
        load_checkpoint(copy_of / "config.json")  # it was called 'the config.json/ folder'


def test_a_folder_inside_a_training_run_names_its_checkpoints(tmp_path, trained):
    """RUN/checkpoints was told to pass RUN itself (RUN holds a config.json, the run's settings), which then was
    refused as a training run directory: the advice went round in a circle. It now names RUN/best and RUN/latest."""
    _, params, _ = trained
    run = tmp_path / "run"
    save_checkpoint(run / "best", MODEL, params)
    (run / "config.json").write_text('{"epochs": 3}', encoding="utf-8")
    (run / "checkpoints").mkdir()
    with pytest.raises(CheckpointError, match=rf"checkpoints is inside a training run directory, not a checkpoint; .*"
                                              rf"its checkpoints are {run / 'best'} and {run / 'latest'}"):
        load_checkpoint(run / "checkpoints")


def test_a_folder_holding_checkpoints_names_them(tmp_path, trained):
    """--checkpoint physnetjax/pretrained/co2 (the shipped model's folder; its checkpoint is co2/model) was only 'not a
    checkpoint'."""
    _, params, _ = trained
    save_checkpoint(tmp_path / "co2" / "model", MODEL, params)
    (tmp_path / "co2" / "co2.xyz").write_text("3\n\n")
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / 'co2'} is not a checkpoint: no config.json "
                                                        "(physnetjax format) and no legacy orbax checkpoint (epoch-N "
                                                        "directory with _METADATA); it holds the checkpoint "
                                                        f"{tmp_path / 'co2' / 'model'}: pass that")):
        load_checkpoint(tmp_path / "co2")
    save_checkpoint(tmp_path / "co2" / "other", MODEL, params)
    with pytest.raises(CheckpointError, match=re.escape(f"; it holds the checkpoints {tmp_path / 'co2' / 'model'}, "
                                                        f"{tmp_path / 'co2' / 'other'}: pass one of them")):
        load_checkpoint(tmp_path / "co2")
    with pytest.raises(CheckpointError, match=r"_METADATA\)$"):  # nothing one level down: no hint
        load_checkpoint(tmp_path)


def test_edited_config_is_reported_old_checkpoints_still_load(copy_of, trained):
    """On main one changed digit of an element energy or of the cutoff shifted every energy silently."""
    original = (copy_of / "config.json").read_text(encoding="utf-8")
    for key, value in (("cutoff", 5.5), ("element_energies", [-0.5 * z + (z == 1) for z in range(119)])):
        config = json.loads(original)
        config["model"][key] = value
        (copy_of / "config.json").write_text(json.dumps(config), encoding="utf-8")
        with pytest.raises(CheckpointError, match="config.json fails its SHA-256 check"):
            load_checkpoint(copy_of)
        with pytest.raises(CheckpointError, match="config.json fails its SHA-256 check"):
            load_train_state(copy_of)
    config = json.loads(original)
    del config[ckformat.CONFIG_CHECKSUM_KEY]  # as written before the checksum existed
    (copy_of / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    with pytest.warns(PhysNetInputWarning, match="config.json has no config_sha256 .* an edit of its settings cannot "
                                                 "be detected"):  # deleting the entry must not hide an edit
        model, params = load_checkpoint(copy_of)
    assert model == MODEL
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(params),
                                                    jax.tree_util.tree_leaves(trained[1])))


@pytest.mark.parametrize("edit", ["entry", "size", "metadata"])
def test_a_malformed_file_table_or_metadata_of_an_unchecked_config_is_named(copy_of, edit):
    """A config.json without config_sha256 (written before it existed) is not checked by it. On main a files entry
    that was no object, or had no size, was an internal TypeError or KeyError; metadata that was no object loaded,
    to fail later in whatever read it."""
    config = json.loads((copy_of / "config.json").read_text(encoding="utf-8"))
    del config[ckformat.CONFIG_CHECKSUM_KEY]
    name = sorted(config["files"])[0]
    if edit == "entry":
        config["files"][name] = "x"
    elif edit == "size":
        del config["files"][name]["size"]
    else:
        config["metadata"] = [1]
    (copy_of / "config.json").write_text(json.dumps(config), encoding="utf-8")
    message = ("its metadata in config.json is not an object" if edit == "metadata" else
               f"the entry of file {name} in config.json is .*, not its size and sha256")
    with pytest.raises(CheckpointError, match=f"checkpoint .*copy is corrupted: {message}"):
        load_checkpoint(copy_of)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(format_version="1"), "is corrupted: config.json has no integer format_version"),
    (lambda c: c.update(format_version=0), "has an invalid format_version 0"),
    (lambda c: c.pop("files"), "is corrupted: config.json lacks files"),
    (lambda c: c.update(model=None), "is corrupted: config.json lacks model"),
    (lambda c: c["model"].update(no_such_setting=3), r"model config not understood \(.*no_such_setting"),
    # a raw TypeError ('>' between float and str) from the neighbor list, and ValueErrors naming no checkpoint:
    (lambda c: c["model"].update(cutoff="5.0"), r"model config not understood \(cutoff must be a real number"),
    (lambda c: c["model"].update(features="16"), r"model config not understood \(features must be an integer"),
    (lambda c: c["model"].update(num_iterations=0), r"model config not understood \(num_iterations must be at "
                                                    r"least 1"),
])
def test_a_damaged_config_without_its_checksum_is_named(copy_of, edit, message):
    """The checks behind the checksum (a config.json written before config_sha256, or hand-edited with the entry
    removed, which warns): each damage is one CheckpointError naming the checkpoint."""
    config = json.loads((copy_of / "config.json").read_text(encoding="utf-8"))
    del config[ckformat.CONFIG_CHECKSUM_KEY]
    edit(config)
    (copy_of / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhysNetInputWarning)
        with pytest.raises(CheckpointError, match=f"checkpoint .*copy.*{message}"):
            load_checkpoint(copy_of)


def test_overwrite_killed_between_renames_is_restored_on_next_load(tmp_path, trained, caplog):
    """kill -9 after the old checkpoint was renamed aside and before the new one was renamed in:
    on main the target was gone and the old copy sat in a hidden directory nothing mentioned."""
    _, params, _ = trained
    path = save_checkpoint(tmp_path / "ckpt", MODEL, params, {"version": "old"})
    path.rename(tmp_path / ".ckpt.replaced-0123abcd")  # the state such a crash leaves
    (tmp_path / ".ckpt.partial-xyz").mkdir()  # and the new, unfinished copy
    with caplog.at_level("WARNING", logger="physnetjax.checkpoint.format"):
        assert load_checkpoint(path, with_metadata=True)[2] == {"version": "old"}
    assert "restored the previous checkpoint from .ckpt.replaced-0123abcd" in caplog.text
    path.rename(tmp_path / ".ckpt.replaced-0123abcd")
    save_checkpoint(path, MODEL, params, {"version": "new"}, overwrite=True)  # save recovers first, then replaces
    assert load_checkpoint(path, with_metadata=True)[2] == {"version": "new"}
    assert not list(tmp_path.glob(".ckpt.replaced-*"))


@pytest.mark.parametrize("name", ["ethanol", "co2", "ethanol_ir"])
def test_shipped_models_record_their_elements_and_a_config_checksum(name):
    """Every shipped model names the elements of its training data (the ethanol models: those of the
    bundled ethanol set; CO2: C and O) and protects config.json with its SHA-256, so an edited
    setting is refused."""
    from physnetjax.data import bundled_dataset_path, load_dataset
    from physnetjax.pretrained import example_model_path
    from physnetjax.training_record import TrainingRecord

    path = example_model_path(name)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    assert config["config_sha256"] == ckformat.config_checksum(config)
    ethanol = load_dataset([bundled_dataset_path()])
    expected = [6, 8] if name == "co2" else sorted(int(z) for z in np.unique(ethanol.Z) if z > 0)
    record = TrainingRecord.from_metadata(load_checkpoint(path, with_metadata=True)[2])
    assert record.elements == tuple(expected)
    assert record.charges == (0.0,)  # all neutral frames


def test_trained_elements_are_read_from_a_resaved_runs_metadata():
    from physnetjax.training_record import TrainingRecord

    def elements(metadata):
        return TrainingRecord.from_metadata(metadata).elements

    assert elements({"source_metadata": {"trained_elements": [8, 1]}}) == (1, 8)
    assert elements({"trained_elements": [6], "source_metadata": {"trained_elements": [1]}}) == (6,)
    assert elements({"source_metadata": {}}) is None and elements(None) is None


def test_trained_charges_are_read_like_trained_elements():
    from physnetjax.training_record import TrainingRecord

    def charges(metadata):
        return TrainingRecord.from_metadata(metadata).charges

    assert charges({"source_metadata": {"trained_charges": [1, 0]}}) == (0.0, 1.0)
    assert charges({"trained_charges": [-1.0], "source_metadata": {"trained_charges": [0.0]}}) == (-1.0,)
    assert charges({"trained_elements": [1]}) is None and charges(None) is None


def test_the_e0_fit_record_is_read_like_trained_elements():
    from physnetjax.training_record import TrainingRecord

    def fit(metadata):
        return TrainingRecord.from_metadata(metadata).element_energies_fit

    assert fit({"source_metadata": {"element_energies_fit": {"rank": 1}}}) == {"rank": 1}
    assert fit({"element_energies_fit": {"rank": 2}, "source_metadata": {"element_energies_fit": {"rank": 1}}}) == {
        "rank": 2}
    assert fit({"element_energies_fit": None}) is None and fit({"element_energies_fit": "bad"}) is None


def test_the_bare_name_of_a_shipped_model_names_where_it_is(tmp_path, monkeypatch):
    """PhysNetCalculator(checkpoint="co2") (as mace_mp(model="small") takes a name) said only "./co2 does not exist";
    the name of a shipped example model now names its path. A path of that name elsewhere is not one."""
    from physnetjax.pretrained import co2_model_path

    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"co2 does not exist; the shipped example model 'co2' is "
                                              r"physnetjax\.pretrained\.example_model_path\('co2'\) \("
                                              + re.escape(str(co2_model_path())) + r"\)$"):
        load_checkpoint("co2")
    with pytest.raises(CheckpointError, match=r"co2 does not exist$"):
        load_checkpoint(tmp_path / "co2")
    with pytest.raises(CheckpointError, match=r"no_such_model does not exist$"):  # a bare name, but none shipped
        load_checkpoint("no_such_model")


def test_the_checkpoints_of_a_training_run_are_told_from_other_folders(tmp_path):
    """A training run is a folder with model.json beside checkpoints/; its checkpoints (also through its best link)
    are never overwritten by migrate or ensemble combine. A checkpoints/ folder without model.json, model.json alone,
    another folder of a run, or a path not yet written is no run checkpoint."""
    run = tmp_path / "run"
    epoch = run / "checkpoints" / "epoch-0001"
    epoch.mkdir(parents=True)
    (run / "model.json").write_text("{}")
    (run / "best").symlink_to(epoch, target_is_directory=True)
    (run / "notes" / "x").mkdir(parents=True)
    other = tmp_path / "other" / "checkpoints" / "epoch-0001"
    other.mkdir(parents=True)
    (tmp_path / "half" / "checkpoints").mkdir(parents=True)
    (tmp_path / "alone").mkdir()
    (tmp_path / "alone" / "model.json").write_text("{}")

    assert ckformat.is_training_run(run)
    assert not any(ckformat.is_training_run(tmp_path / name) for name in ("other", "half", "alone"))
    assert ckformat.training_run_of(epoch) == run and ckformat.training_run_of(run / "best") == run
    assert [ckformat.training_run_of(path) for path in (other, run / "notes" / "x", run)] == [None, None, None]
    for path in (epoch, run / "best"):
        with pytest.raises(OutputPathError, match=rf"^refusing to write NEW {re.escape(str(path))}: it is "
                                                  rf"{re.escape(str(epoch))}, a checkpoint of the training run "):
            ckformat.check_not_a_run_checkpoint(path, "NEW")
    for path in (other, run / "notes" / "x", run / "checkpoints" / "epoch-0002"):
        ckformat.check_not_a_run_checkpoint(path, "NEW")


def test_loaded_weights_are_jax_arrays_but_float64_ones_stay_numpy_while_x64_is_off(tmp_path, trained):
    """load_checkpoint gives JAX arrays; only float64 weights while JAX's 64-bit mode is off stay NumPy float64
    (a JAX array would round them to float32 on the spot)."""
    single = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float32), trained[1])
    path = save_checkpoint(tmp_path / "float32", MODEL, single)
    with jax.enable_x64(False):
        narrow, wide = load_checkpoint(path)[1], load_checkpoint(trained[0])[1]
    assert all(isinstance(leaf, jax.Array) and leaf.dtype == np.float32 for leaf in jax.tree_util.tree_leaves(narrow))
    assert all(type(leaf) is np.ndarray and leaf.dtype == np.float64 for leaf in jax.tree_util.tree_leaves(wide))
    assert all(isinstance(leaf, jax.Array) and leaf.dtype == np.float64
               for leaf in jax.tree_util.tree_leaves(load_checkpoint(trained[0])[1]))
