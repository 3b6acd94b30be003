"""Config files for every CLI (issue 19, item 1): templates list every option, the command line
overrides the file, bad keys are one-line errors naming key and file, and a run's resolved
config.toml repeats the run."""

import argparse
import dataclasses
import inspect
import json
import math
import re
import tomllib

import ase.io
import pytest
from ase import Atoms

from physnetjax import PhysNet, init_params, save_checkpoint
from physnetjax.check.__main__ import build_parser as check_parser
from physnetjax.check.__main__ import main as check_main
from physnetjax.cli_config import (CONFIG_NAME, OptionUse, check_config_replaceable, given_options, parse_args,
                                   read_config, refuse_unused_options, write_resolved_config)
from physnetjax.errors import OutputPathError, PhysNetInputError, PhysNetInputWarning
from physnetjax.eval.cli import build_parser as eval_parser
from physnetjax.eval.cli import main as eval_main
from physnetjax.learn.__main__ import build_parser as learn_parser
from physnetjax.learn.__main__ import main as learn_main
from physnetjax.md.__main__ import KEYWORD_OF
from physnetjax.md.__main__ import build_parser as md_parser
from physnetjax.md.__main__ import main as md_main
from physnetjax.md.driver import simulate
from physnetjax.md.ensembles import EnsembleOptions
from physnetjax.spectra.__main__ import build_parser as spectra_parser
from physnetjax.spectra.__main__ import main as spectra_main
from physnetjax.train import TrainConfig, resume
from physnetjax.train.cli import build_parser as train_parser
from physnetjax.train.cli import main as train_main

from conftest import DATA, warnings_as_errors

TRAIN_DATA = DATA / "train_ethanol64.npz"
NOT_KEYS = {"help", "config", "print_config"}


def _subparser(name):
    def build():
        (action,) = [a for a in spectra_parser()._actions if isinstance(a, argparse._SubParsersAction)]
        return action.choices[name]
    return build


# name, main, tokens before the options, parser of the options, required options (for a parse)
CLIS = [
    ("train", train_main, [], train_parser, []),
    ("md", md_main, [], md_parser, ["--geometry", "g.xyz"]),
    ("check", check_main, [], check_parser, []),
    ("eval", eval_main, [], eval_parser, ["--data", "d.npz"]),
    ("learn", learn_main, [], learn_parser, []),
    ("spectra harmonic", spectra_main, ["harmonic"], _subparser("harmonic"),
     ["--checkpoint", "c", "--geometry", "g.xyz", "--out", "o"]),
    ("spectra ir", spectra_main, ["ir"], _subparser("ir"),
     ["--checkpoint", "c", "--geometry", "g.xyz", "--out", "o", "--temperature", "300", "--time-ps", "1"]),
]


def print_config(capsys, main, prefix) -> str:
    with pytest.raises(SystemExit) as stop:
        main([*prefix, "--print-config"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def template_keys(text: str) -> list[str]:
    """Keys of a template, commented-out ones included."""
    return re.findall(r"^(?:# )?([a-z0-9_]+) = ", text, flags=re.MULTILINE)


@pytest.mark.parametrize("name, main, prefix, build, required", CLIS, ids=[c[0] for c in CLIS])
def test_every_option_of_every_cli_is_a_key_of_its_template(capsys, tmp_path, name, main, prefix, build, required):
    parser = build()
    dests = {a.dest for a in parser._actions
             if a.dest not in NOT_KEYS and not isinstance(a, (argparse._SubParsersAction, argparse._HelpAction))}
    text = print_config(capsys, main, prefix)
    keys = template_keys(text)
    assert sorted(keys) == sorted(dests), name
    values = tomllib.loads(text)
    defaults = ({"preset": "fast", **TrainConfig().to_dict()} if name == "train"
                else {a.dest: a.default for a in parser._actions})
    for key, value in values.items():
        expected = defaults.get(key, False)
        assert value == expected and type(value) is type(expected), (name, key, value, expected)
    assert all(defaults.get(key) is None for key in set(keys) - set(values)), name
    # the unedited template as --config gives exactly the options of no config file
    path = tmp_path / "template.toml"
    path.write_text(text)
    top = {"train": train_parser, "md": md_parser, "check": check_parser, "eval": eval_parser,
           "learn": learn_parser}.get(name, spectra_parser)
    assert options_of(parse_args(top(), [*prefix, "--config", str(path), *required]), name) == (
        options_of(parse_args(top(), [*prefix, *required]), name))


def options_of(namespace, name="") -> dict:
    """The options a run uses: spectra's namespace also carries its subcommand's parser object; the trainer
    leaves options it was not given out (argparse.SUPPRESS) and takes them from TrainConfig (and the preset
    "fast", which is TrainConfig's defaults)."""
    given = {key: value for key, value in vars(namespace).items() if key != "parser"}
    if name == "train":
        return {**TrainConfig().to_dict(), "preset": "fast", "allow_changed_data": False, "verbose": False,
                "quiet": False, **given}
    return given


def test_file_values_are_defaults_and_the_command_line_wins(tmp_path, capsys):
    path = tmp_path / "md.toml"
    path.write_text('geometry = "water.xyz"\nsteps = 40\ntemperature = 250\nsave-every = 5\nfloat64 = true\n')
    checked = tomllib.loads(print_config(capsys, md_main, ["--config", str(path)]))
    assert (checked["geometry"], checked["steps"], checked["save_every"], checked["chunk"]) == ("water.xyz", 40, 5, 100)
    args = parse_args(md_parser(), ["--config", str(path), "--steps", "80"])
    assert args.geometry == "water.xyz" and args.steps == 80 and args.save_every == 5 and args.float64 is True
    assert args.temperature == 250.0 and isinstance(args.temperature, float)
    args = parse_args(md_parser(), ["--steps", "80", "--config", str(path), "--temperature", "10"])
    assert args.steps == 80 and args.temperature == 10.0
    spectra = tmp_path / "ir.toml"
    spectra.write_text('checkpoint = "c"\ngeometry = "g.xyz"\nout = "o"\ntemperature = 300.0\ntime_ps = 2\n'
                       'masses = [1, 2.5]\nno_plot = true\n')
    args = parse_args(spectra_parser(), ["ir", "--config", str(spectra), "--replicas", "2"])
    assert (args.command, args.time_ps, args.masses, args.no_plot, args.replicas) == ("ir", 2.0, [1.0, 2.5], True, 2)


def test_config_given_twice_is_refused_unless_it_is_the_same_file(tmp_path, capsys):
    """argparse kept the last --config: the first file's values were dropped without a word."""
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text("steps = 3\n")
    second.write_text('geometry = "water.xyz"\n')
    with pytest.raises(PhysNetInputError, match=rf"--config is given 2 times \({re.escape(str(first))}, "
                                                rf"{re.escape(str(second))}\): one file is read"):
        parse_args(md_parser(), ["--config", str(first), "--config", str(second)])
    assert md_main(["--config", str(first), "--config", str(second)]) == 2
    assert "merge them into one file" in capsys.readouterr().err
    assert parse_args(md_parser(), ["--config", str(second), "--config", str(second)]).geometry == "water.xyz"


def test_md_refuses_an_option_its_ensemble_ignores_from_a_config_file_too(tmp_path, capsys):
    """A hand-written config's friction for NVE was ignored without a word, though the same option on the command
    line is refused; a template (every option at its default) is not refused."""
    csvr = tmp_path / "csvr.toml"
    csvr.write_text('geometry = "water.xyz"\nensemble = "csvr"\nfriction = 0.05\nsteps = 10\n')
    assert md_main(["--config", str(csvr)]) == 2
    assert (f"--ensemble csvr does not use --friction (langevin only, set in --config {csvr})"
            in capsys.readouterr().err)
    langevin = tmp_path / "langevin.toml"
    langevin.write_text('geometry = "water.xyz"\nensemble = "langevin"\nfriction = 0.05\n')
    assert md_main(["--config", str(langevin), "--ensemble", "nve"]) == 2
    assert "does not use --friction (langevin only, set in --config" in capsys.readouterr().err
    template = tmp_path / "template.toml"
    template.write_text(print_config(capsys, md_main, []).replace("# geometry = ", "geometry = "))
    assert md_main(["--config", str(template), "--geometry", str(tmp_path / "none.xyz"), "--ensemble", "nve"]) == 2
    assert "does not use" not in capsys.readouterr().err


def _option_use_parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("a", "b", "c"), default="a")
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--level", type=float, default=1.0)
    for name in ("--alpha", "--beta", "--gamma", "--delta"):
        parser.add_argument(name, type=float, default=0.0)
    return parser


OPTION_USES = [OptionUse("alpha", "mode", ("b",)), OptionUse("delta", "mode", ("b",)),
               OptionUse("beta", "mode", ("b", "c")), OptionUse("gamma", "fast", (True,), unused_at=True),
               OptionUse("alpha", "level", (0.0,), unused_at=True, note="levels > 0 only", remedy="raise --level")]


@pytest.mark.parametrize("argv, chosen, message", [
    (["--alpha", "1"], ["alpha"], "--mode a (the default) does not use --alpha (b only): remove it or choose --mode b"),
    (["--mode", "a", "--alpha", "1", "--beta", "2"], ["mode", "alpha", "beta"],
     "--mode a does not use --alpha (b only), --beta (b / c only): remove them or choose a --mode that uses them"),
    (["--mode", "c", "--beta", "2", "--alpha", "1"], ["mode", "beta", "alpha"],
     "--mode c does not use --alpha (b only): remove it or choose --mode b"),
    (["--fast", "--gamma", "1"], ["fast", "gamma"], "--fast does not use --gamma: remove it or leave out --fast"),
    (["--mode", "a", "--alpha", "1", "--delta", "2", "--beta", "3"], ["mode", "alpha", "delta", "beta"],
     "--mode a does not use --alpha, --delta (b only), --beta (b / c only): remove them or choose a --mode that "
     "uses them"),
    (["--mode", "b", "--level", "0", "--alpha", "1"], ["mode", "level", "alpha"],
     "--level 0 does not use --alpha (levels > 0 only): remove it or raise --level"),
])
def test_an_option_its_decider_leaves_unused_is_refused_by_name(argv, chosen, message):
    """One refusal for every command line (md's ensemble options, learn's, spectra's, data.generate's): the decider
    with its value (marked as the default when nobody chose it), each option with where it acts."""
    parser = _option_use_parser()
    with pytest.raises(PhysNetInputError) as caught:
        refuse_unused_options(parser, parser.parse_args(argv), OPTION_USES, dict.fromkeys(chosen))
    assert str(caught.value) == message


@pytest.mark.parametrize("argv", [[], ["--mode", "b", "--alpha", "1", "--beta", "2"], ["--mode", "c", "--beta", "2"],
                                  ["--gamma", "1"], ["--fast"], ["--mode", "b", "--level", "2", "--alpha", "1"]])
def test_options_their_deciders_use_pass(argv):
    parser = _option_use_parser()
    args = parser.parse_args(argv)
    refuse_unused_options(parser, args, OPTION_USES, dict.fromkeys(given_options(parser, argv)))


def test_an_unused_option_from_a_config_file_names_the_file():
    parser = _option_use_parser()
    with pytest.raises(PhysNetInputError, match=r"^--mode c does not use --alpha \(b only, set in --config "
                                                r"run.toml\): remove it or choose --mode b$"):
        refuse_unused_options(parser, parser.parse_args(["--mode", "c", "--alpha", "3"]), OPTION_USES,
                              {"mode": None, "alpha": "run.toml"})


def test_given_options_are_those_of_the_command_line(tmp_path):
    """What md's check of contradictory options sees: command-line options (abbreviated, with '=', switches),
    neither defaults nor the values of a config file (a template lists every option)."""
    (tmp_path / "run.toml").write_text('ensemble = "langevin"\nfriction = 0.05\nsteps = 20\n')
    argv = ["--geometry=g.xyz", "--config", str(tmp_path / "run.toml"), "--barostat", "50", "--anisotropic"]
    parser = md_parser()
    args = parse_args(parser, argv)
    assert (args.ensemble, args.friction, args.barostat_time) == ("langevin", 0.05, 50.0)
    assert given_options(parser, argv) == {"geometry", "barostat_time", "anisotropic"}
    harmonic = ["harmonic", "--checkpoint", "c", "--geometry", "g.xyz", "--out", "o", "--fmax", "0.01"]
    assert given_options(spectra_parser(), harmonic) == {"checkpoint", "geometry", "out", "fmax"}


@pytest.mark.parametrize("argv, match", [
    (["--geometry", "g.xyz", "--temperature", "300", "--temperature=400"],
     r"^--temperature is given 2 times \(300.0; 400.0\): the last, 400.0, is used$"),
    (["--geometry", "g.xyz", "--save-ev", "5", "--save-every", "10"], r"^--save-every is given 2 times \(5; 10\)"),
    (["--geometry", "a.xyz", "--geometry", "b.xyz"], r"^--geometry is given 2 times \(a.xyz; b.xyz\): the last"),
])
def test_an_option_given_twice_with_other_values_warns(argv, match):
    """argparse keeps the last of repeated options without a word: `spectra harmonic --masses 12 16 16 --masses 13
    16 16` ran with 13C, `--checkpoint A --checkpoint B` with B. A later option overriding an earlier one is how
    wrapper scripts work, so it warns (a config file, written by hand, refuses a key given twice)."""
    with pytest.warns(PhysNetInputWarning, match=match):
        parse_args(md_parser(), argv)
    with pytest.warns(PhysNetInputWarning, match=r"^--masses is given 2 times \(12.0 16.0 16.0; 13.0 16.0 16.0\): "
                                                 r"the last, 13.0 16.0 16.0, is used$"):
        parse_args(spectra_parser(), ["harmonic", "--checkpoint", "c", "--geometry", "g.xyz", "--out", "o",
                                      "--masses", "12", "16", "16", "--masses", "13", "16", "16"])
    with warnings_as_errors():  # once, or twice with one value
        parse_args(md_parser(), ["--geometry", "g.xyz", "--temperature", "300"])
        parse_args(md_parser(), ["--geometry", "g.xyz", "--anisotropic", "--anisotropic"])


@pytest.mark.parametrize("content, key, match", [
    ("epoch = 3\n", "epoch", "unknown key 'epoch'.*did you mean 'epochs'"),
    ('epochs = "3"\n', "epochs", 'must be an integer, received "3" \\(string\\)'),
    ("epochs = 3.0\n", "epochs", "must be an integer, received 3.0 \\(float\\)"),
    ("learning_rate = true\n", "learning_rate", "must be a number, received true \\(boolean\\)"),
    ("plots = 1\n", "plots", "must be true or false, received 1 \\(integer\\)"),
    ('data = "a.npz"\n', "data", 'must be an array of strings .*received "a.npz" \\(string\\)'),
    ("data = [1]\n", "data", "must be a string, received 1 \\(integer\\)"),
    ("data = []\n", "data", "needs at least one value, received \\[\\]"),
    ('optimizer = "sgd"\n', "optimizer", "must be one of \\['amsgrad', 'adam', 'adamw'\\]"),
    ("epochs = 3\nepochs-x = 1\n", "epochs-x", "unknown key 'epochs-x'"),
    ("max_time = 3\nmax-time = 4\n", "max-time", "given twice"),
    ("[model]\nfeatures = 8\n", "model", "is a table \\(\\[model\\]\\); config files are flat"),
    ("epochs = \n", None, "not a valid TOML file"),
])
def test_bad_config_files_are_one_line_errors_naming_file_and_key(tmp_path, capsys, content, key, match):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    assert train_main(["--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"python -m physnetjax.train: error: --config {path}: ") and "\n" not in err, err
    if key is not None:
        assert f"key '{key}'" in err
    assert re.search(match, err), err
    assert not (tmp_path / "run").exists()


def test_missing_config_file_and_bad_spectra_key_exit_2(tmp_path, capsys):
    assert md_main(["--config", str(tmp_path / "none.toml")]) == 2
    assert "none.toml" in capsys.readouterr().err
    assert md_main(["--config", str(tmp_path)]) == 2
    assert "is a directory, not a TOML file" in capsys.readouterr().err
    (tmp_path / "bom.toml").write_bytes('geometry = "water.xyz"\n'.encode("utf-8-sig"))  # as Windows editors save
    assert read_config(md_parser(), tmp_path / "bom.toml") == {"geometry": "water.xyz"}
    (tmp_path / "latin1.toml").write_bytes('geometry = "\xe9"\n'.encode("latin-1"))
    assert md_main(["--config", str(tmp_path / "latin1.toml")]) == 2
    assert "latin1.toml: not a valid TOML file" in capsys.readouterr().err
    path = tmp_path / "h.toml"
    path.write_text("temperature = 300.0\n")
    assert spectra_main(["harmonic", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown key 'temperature': not an option of python -m physnetjax.spectra harmonic" in err


def test_train_round_trip_template_to_run_to_resolved_config_to_identical_run(tmp_path, capsys):
    template = tomllib.loads(print_config(capsys, train_main, []))
    edited = template | dict(data=[str(TRAIN_DATA)], features=8, num_basis_functions=8, num_iterations=1,
                             train=16, valid=4, test=4,
                             batch_size=4, learning_rate=1e-2, schedule="exponential", decay_epochs=2.0,
                             epochs=3, progress=False, plots=False, out=str(tmp_path / "first"))
    path = tmp_path / "edited.toml"
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in edited.items()))
    assert train_main(["--config", str(path), "--epochs", "1", "--quiet"]) == 0
    first = tmp_path / "first"
    resolved = tomllib.loads((first / CONFIG_NAME).read_text())
    recorded = json.loads((first / "config.json").read_text())
    assert recorded["epochs"] == 1 and recorded["features"] == 8 and recorded["data"] == [str(TRAIN_DATA)]
    assert resolved == {**{k: v for k, v in recorded.items() if v is not None},
                        "preset": "fast", "verbose": False, "quiet": False, "allow_changed_data": False}
    # the run directory's config.toml repeats the run: the same TrainConfig, only --out changes (that the
    # same TrainConfig trains the same weights is test_train's resume-equals-uninterrupted test)
    again = options_of(parse_args(train_parser(), ["--config", str(first / CONFIG_NAME), "--out", "second"]), "train")
    assert TrainConfig(**{k: v for k, v in again.items() if k in recorded}) == TrainConfig(
        **(recorded | {"out": "second"}))
    assert train_main(["--config", str(first / CONFIG_NAME), "--quiet"]) == 3
    assert (f"error: --out {first} (from --config {first / CONFIG_NAME}) already holds a run; resume it with "
            f"--resume {first} or pick --out") in capsys.readouterr().err
    # ... and may be passed again to --resume: only what differs from the run counts as a change
    with pytest.raises(ValueError, match=r"cannot change learning_rate when resuming \(only epochs, max_time"):
        resume(first, **(TrainConfig(**recorded).to_dict() | {"learning_rate": 1.0}))
    assert train_main(["--resume", str(first), "--config", str(first / CONFIG_NAME), "--learning-rate", "1"]) == 2
    assert "cannot change --learning-rate when resuming (only --epochs, --max-time" in capsys.readouterr().err


def test_md_keeps_its_resolved_config_beside_the_trajectory(tmp_path, capsys):
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0,
                    max_atomic_number=9)
    save_checkpoint(tmp_path / "ckpt", model, init_params(model, 0))
    ase.io.write(tmp_path / "water.xyz", Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]))
    path = tmp_path / "md.toml"
    path.write_text(f'checkpoint = "{tmp_path / "ckpt"}"\ngeometry = "{tmp_path / "water.xyz"}"\n'
                    f'out = "{tmp_path / "traj.xyz"}"\nsteps = 40\nsave-every = 2\nchunk = 2\ntemperature = 20\n'
                    'energy_tolerance = 1e4  # an untrained model\n')
    assert md_main(["--config", str(path), "--steps", "4"]) == 0, capsys.readouterr().err
    resolved = tmp_path / f"traj.xyz.{CONFIG_NAME}"
    used = parse_args(md_parser(), ["--config", str(path), "--steps", "4"])
    assert options_of(parse_args(md_parser(), ["--config", str(resolved)])) == options_of(used)
    assert tomllib.loads(resolved.read_text())["steps"] == 4
    assert len(ase.io.read(tmp_path / "traj.xyz", index=":")) == 4 // 2


def test_resolved_values_survive_toml_exactly(tmp_path):
    """Strings with quotes, backslashes, unicode and control characters, extreme and non-finite floats."""
    used = {"geometry": 'dir "a"\\b/ethanol Å\t\x01.xyz', "temperature": 1e-300, "pressure": -3.3333333333333335e+20,
            "compressibility": 4.5e-05, "steps": 2 ** 40, "float64": True, "out": None, "anisotropic": False,
            "ensemble": "npt", "thermostat_time": float("inf"), "barostat_time": float("-inf"),
            "friction": float("nan")}
    path = tmp_path / "resolved.toml"
    write_resolved_config(md_parser(), used, path)
    read = read_config(md_parser(), path)
    assert math.isnan(read.pop("friction")) and math.isnan(used.pop("friction"))
    given = {k: v for k, v in used.items() if v is not None}
    assert "out" not in read and {k: read[k] for k in given} == given
    assert all(type(read[k]) is type(v) for k, v in given.items())


def test_a_resolved_config_is_replaced_only_by_a_run_of_the_command_that_wrote_it(tmp_path):
    path = tmp_path / CONFIG_NAME
    check_config_replaceable(eval_parser(), path)  # nothing there yet
    write_resolved_config(eval_parser(), {}, path)
    check_config_replaceable(eval_parser(), path)  # a rerun of eval
    with pytest.raises(OutputPathError, match=rf"--out: {re.escape(str(path))} holds the options of a run of "
                                              r"python -m physnetjax\.eval; this run of python -m physnetjax\.train"):
        check_config_replaceable(train_parser(), path)
    path.write_text("# my own settings\nepochs = 3\n")
    with pytest.raises(OutputPathError, match="holds a file no physnetjax run wrote"):
        check_config_replaceable(eval_parser(), path)


WATER_XYZ = "3\n\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n"


@pytest.mark.parametrize("name, main, prefix, build, required", [c for c in CLIS if c[0] != "check"],
                         ids=[c[0] for c in CLIS if c[0] != "check"])
def test_no_cli_replaces_the_config_of_another_tools_run(tmp_path, capsys, name, main, prefix, build, required):
    """eval/spectra/learn --out RUN into a training run replaced its config.toml (train --config RUN/config.toml
    then failed on their keys), and train --out into another tool's output directory did the same."""
    from physnetjax.pretrained import example_model_path

    (tmp_path / "g.xyz").write_text(WATER_XYZ)
    out = tmp_path / "out"
    out.mkdir()
    config = tmp_path / f"out.xyz.{CONFIG_NAME}" if name == "md" else out / CONFIG_NAME
    other = eval_parser() if name == "train" else train_parser()
    write_resolved_config(other, {}, config)
    before = config.read_text()
    arguments = {"train": ["--data", str(TRAIN_DATA), "--out", str(out)],
                 "md": ["--geometry", str(tmp_path / "g.xyz"), "--out", str(tmp_path / "out.xyz")],
                 "eval": ["--data", str(TRAIN_DATA), "--out", str(out)],
                 "learn": ["--out", str(out)]}.get(name, ["--checkpoint", str(example_model_path()), "--geometry",
                                                          str(tmp_path / "g.xyz"), "--out", str(out),
                                                          *required[6:]])
    assert main([*prefix, *arguments]) == 3
    assert f"{config} holds the options of a run of {other.prog}; this run of" in capsys.readouterr().err
    assert config.read_text() == before and sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["g.xyz", "out", config.name])


def test_negative_numbers_in_scientific_notation_are_option_values():
    """argparse reads only -5 and -0.5 as numbers: `md --pressure -1e9` failed with 'argument --pressure: expected one
    argument' (only --pressure=-1e9 worked)."""
    argv = ["--geometry", "g.xyz", "--ensemble", "npt", "--pressure", "-1e9", "--pressure-end", "-2.5E-3", "--seed",
            "-7"]
    args = parse_args(md_parser(), argv)
    assert (args.pressure, args.pressure_end, args.seed) == (-1e9, -2.5e-3, -7)
    assert {"pressure", "pressure_end", "seed"} <= given_options(md_parser(), argv)
    harmonic = parse_args(spectra_parser(), ["harmonic", "--checkpoint", "c", "--geometry", "g.xyz", "--out", "o",
                                             "--total-charge", "-1e0"])
    assert harmonic.total_charge == -1.0
    with pytest.raises(SystemExit):  # a switch takes no value: the number stays a token argparse refuses
        parse_args(md_parser(), ["--geometry", "g.xyz", "--float64", "-1e9"])


def test_md_command_line_defaults_are_the_python_apis():
    """`python -m physnetjax.md` without options runs what simulate() and EnsembleOptions run by default: a changed
    default on one side would make the same run differ between the command line and the library."""
    args = vars(md_parser().parse_args(["--geometry", "in.xyz"]))
    options = {field.name: field.default for field in dataclasses.fields(EnsembleOptions)}
    for dest, keyword in KEYWORD_OF.items():
        if keyword in options:
            assert args[dest] == options[keyword], dest
    keywords = {name: p.default for name, p in inspect.signature(simulate).parameters.items()}
    for dest, keyword in (("temperature", "temperature_K"), ("timestep", "timestep_fs"), ("steps", "steps"),
                          ("save_every", "save_every"), ("chunk", "chunk_frames"), ("seed", "seed"),
                          ("max_force", "max_force"), ("skin", "skin"), ("ensemble", "ensemble")):
        assert args[dest] == keywords[keyword], dest
    assert options["temperature_K"] == keywords["temperature_K"]
