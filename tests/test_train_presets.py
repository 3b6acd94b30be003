"""``--preset fast|accurate`` (issue 18, item 3): named settings under the config file and the command line."""

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from physnetjax.checkpoint import load_checkpoint
from physnetjax.cli_config import CONFIG_NAME
from physnetjax.predict import predict
from physnetjax.train import TrainConfig, loop
from physnetjax.train.cli import main as train_main
from physnetjax.train.config import PRESETS, preset_settings


@pytest.fixture
def started(monkeypatch):
    """The TrainConfig the CLI would train (nothing is trained), and the resolved config.toml it writes."""
    seen = {}

    def fake_train(config, on_start=None, names=None):
        seen["config"] = config
        on_start(config, seen["directory"])

    monkeypatch.setattr(loop, "train", fake_train)
    return seen


def test_fast_is_the_defaults_and_accurate_is_the_larger_model():
    assert TrainConfig.from_preset("fast") == TrainConfig()
    accurate = TrainConfig.from_preset("accurate")
    larger = dict(correlation=3, radial_mlp=64, message_degree=2)
    assert (accurate.features, accurate.learning_rate, accurate.correlation) == (64, 5e-3, 3)
    assert (accurate.radial_mlp, accurate.message_degree) == (64, 2)
    assert (TrainConfig().features, TrainConfig().learning_rate) == (32, 5e-3)
    assert (TrainConfig().radial_mlp, TrainConfig().message_degree) == (None, None)
    assert accurate == TrainConfig(features=64, **larger)
    assert TrainConfig.from_preset("accurate", features=48, epochs=3) == TrainConfig(features=48, epochs=3, **larger)
    with pytest.raises(ValueError, match=r"preset must be one of \('fast', 'accurate'\), received 'best'"):
        preset_settings("best")
    assert PRESETS["fast"] == {}


def test_the_defaults_are_the_documented_ones():
    """The trainer's defaults as the documents state them, so that a changed default is a decision and not a slip:
    the defaults study's choice (benchmarks/README.md "Defaults study": batch 8 and learning rate 5e-3 over the
    former batch 16 and 3e-3; model, loss, optimiser, schedule and EMA kept; the final stage off), and README's 40
    epochs, 10 % validation and test frames, force-check threshold 1e-3 eV/Å and checkpoints at most every 10 s."""
    documented = dict(batch_size=8, learning_rate=5e-3, features=32, max_degree=1, num_iterations=2, n_res=1,
                      loss="mse", energy_weight=1.0, forces_weight=50.0, optimizer="amsgrad", schedule="cosine",
                      warmup_epochs=1.0, ema_decay=0.999, final_stage=0.0, epochs=40, valid=0.1, test=0.1,
                      force_check_threshold=1e-3, checkpoint_interval_s=10.0)
    defaults = TrainConfig()
    assert {name: getattr(defaults, name) for name in documented} == documented


@pytest.mark.parametrize("argv, file_text, features, preset", [
    ([], None, 32, "fast"),
    (["--preset", "accurate"], None, 64, "accurate"),
    (["--preset", "accurate", "--features", "48"], None, 48, "accurate"),
    (["--preset", "accurate"], "features = 40\n", 40, "accurate"),   # the file overrides the preset ...
    ([], 'preset = "accurate"\n', 64, "accurate"),                    # ... and may name one
    (["--preset", "fast"], 'preset = "accurate"\n', 32, "fast"),      # the command line wins
])
def test_preset_is_overridden_by_file_and_command_line(started, tmp_path, argv, file_text, features, preset):
    started["directory"] = tmp_path
    if file_text is not None:
        (tmp_path / "run.toml").write_text(file_text)
        argv = [*argv, "--config", str(tmp_path / "run.toml")]
    assert train_main([*argv, "--quiet"]) == 0
    assert started["config"].features == features
    assert started["config"].correlation == (3 if preset == "accurate" else 1)
    resolved = tomllib.loads((tmp_path / CONFIG_NAME).read_text())
    assert resolved["preset"] == preset and resolved["features"] == features


def test_unknown_preset_and_a_preset_contradicting_a_resumed_run_are_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train_main(["--preset", "best"])
    assert stop.value.code == 2 and "invalid choice: 'best'" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    TrainConfig(features=64).save(run / "config.json")
    assert train_main(["--resume", str(run), "--preset", "fast", "--features", "32"]) == 2
    assert "cannot change --features when resuming (only --epochs, --max-time, --patience" in capsys.readouterr().err
    run_fast = tmp_path / "fast"
    run_fast.mkdir()
    TrainConfig().save(run_fast / "config.json")
    assert train_main(["--resume", str(run_fast), "--preset", "accurate"]) == 2
    assert ("cannot change --correlation, --features, --message-degree, --radial-mlp when resuming"
            in capsys.readouterr().err)  # main: "cannot change ['correlation', 'features', ...]", the fields
    assert json.loads((run_fast / "config.json").read_text())["features"] == 32


@pytest.mark.slow
def test_accurate_preset_trains_and_its_checkpoint_predicts(tmp_path):
    """A real (tiny) run of the accurate model: products, radial perceptron and degree-2 messages
    pass the trainer's float64 force check, and the saved checkpoint rebuilds the same model."""
    data = Path(__file__).parent / "data" / "train_ethanol64.npz"
    out = tmp_path / "run"
    assert train_main(["--data", str(data), "--out", str(out), "--preset", "accurate", "--features", "4",
                       "--radial-mlp", "4", "--num-basis-functions", "4", "--train", "8", "--valid", "4",
                       "--test", "4", "--epochs", "1", "--batch-size", "4", "--no-progress", "--no-plots",
                       "--quiet"]) == 0
    model, params = load_checkpoint(out / "best")
    assert (model.correlation, model.radial_mlp, model.message_degree, model.max_degree) == (3, 4, 2, 1)
    assert params["params"]["MessagePass_0"]["filter"]["2+"]["kernel"].shape == (4, 4)
    with np.load(data) as frames:
        n = int(frames["N"][0])
        result = predict(model, params, frames["Z"][0, :n], frames["R"][0, :n])
    assert np.all(np.isfinite(result["forces"])) and np.isfinite(result["energy"]).all()
