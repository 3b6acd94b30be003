"""The final training stage (--final-stage, --final-energy-weight): which steps it covers in epoch-based
and time-budgeted runs (a fake clock), that resume continues it, and that its step minimises the loss
with the final energy weight."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax.train import TrainConfig, Trainer
from physnetjax.train.cli import build_parser
from physnetjax.train.stages import epoch_run_progress, in_final_stage

from test_time_budget import FakeClock, Interrupted
from test_train import leaves, tiny_config

STEPS_PER_EPOCH = 6  # TINY: 24 training frames, batch 4


def record_stages(trainer, clock, calls, stop_at=None):
    """Advance ``clock`` 1 s per step and append (global step, stage 1 or 2) to ``calls`` for each step taken."""
    for name, stage in (("train_step", 1), ("final_train_step", 2)):
        step = getattr(trainer, name)

        def counted(state, batch, labels, scale, step=step, stage=stage):
            number = int(state.step) + 1
            if stop_at is not None and number >= stop_at:
                raise Interrupted
            calls.append((number, stage))
            clock.now += 1.0
            return step(state, batch, labels, scale)

        setattr(trainer, name, counted)
    return trainer


def run_recorded(out, calls, resuming=False, stop_at=None, **changes):
    if resuming:
        config = TrainConfig.load(out / "config.json")
    else:
        config = tiny_config(out, schedule="constant", **changes)
        out.mkdir(parents=True)
        config.save(out / "config.json")
    clock = FakeClock(lambda step: 0.0, compile_seconds=0.0)
    return record_stages(Trainer(config, out, resuming=resuming, clock=clock), clock, calls, stop_at).run()


def final_steps(calls):
    return [number for number, stage in calls if stage == 2]


def test_final_stage_covers_the_last_fraction_of_the_steps():
    total = 60
    stage = [t for t in range(1, total + 1) if in_final_stage(epoch_run_progress(t, 10, 6), 0.2)]
    assert stage == list(range(49, 61))  # the last 0.2 · 60 = 12 steps
    odd = [t for t in range(1, total + 1) if in_final_stage(epoch_run_progress(t, 10, 6), 0.25)]
    assert odd == list(range(46, 61))  # 0.25 · 60 = 15 steps: p > 0.75 from step 46
    assert not any(in_final_stage(p, 0.0) for p in (0.0, 0.5, 1.0))


def test_epoch_run_switches_to_the_final_stage_at_its_fraction(tmp_path):
    calls = []
    run_recorded(tmp_path / "epochs", calls, epochs=5, final_stage=0.25)
    assert [number for number, _ in calls] == list(range(1, 31))
    assert final_steps(calls) == list(range(23, 31))  # p = t / 30 > 0.75: t ≥ 23


def test_budget_run_switches_at_the_fraction_of_the_budget_and_resume_continues_it(tmp_path):
    """1 s per step, 30 s budget, final stage 0.2: the last 6 s (steps 25..30) are the final stage."""
    uninterrupted, calls = tmp_path / "uninterrupted", []
    summary = run_recorded(uninterrupted, calls, epochs=10, max_time=30.0, final_stage=0.2)
    assert summary["stop_reason"] == "max_time" and summary["epochs_run"] == 5
    assert final_steps(calls) == list(range(25, 31))

    interrupted, before, after = tmp_path / "interrupted", [], []
    with pytest.raises(Interrupted):
        run_recorded(interrupted, before, stop_at=28, epochs=10, max_time=30.0, final_stage=0.2)
    assert final_steps(before) == [25, 26, 27]
    run_recorded(interrupted, after, resuming=True)
    assert after == [(number, 2) for number in range(25, 31)]  # epoch 5 again, from the epoch-4 checkpoint
    for a, b in zip(leaves(Trainer(TrainConfig.load(uninterrupted / "config.json"), uninterrupted, True).state),
                    leaves(Trainer(TrainConfig.load(interrupted / "config.json"), interrupted, True).state)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_final_step_minimises_the_loss_with_the_final_energy_weight(tmp_path):
    """Loss returned by each step = w_E S_E² / n_E + w_F S_F² / n_F of the same batch at the same weights
    (the steps compiled for the other tests: energy weight 1, final energy weight 10, force weight 50)."""
    out = tmp_path / "weights"
    out.mkdir()
    config = tiny_config(out, schedule="constant", final_stage=0.25)
    assert (config.energy_weight, config.final_energy_weight, config.forces_weight) == (1.0, 10.0, 50.0)
    trainer = Trainer(config, out, resuming=False)
    frames, rows = next(iter(trainer.training_inputs()))
    (_, sums, _), _ = trainer.evaluate_rows(trainer.state.params, frames, rows)
    mse = {term: float(sums[term][1]) / float(sums[term][2]) for term in ("E", "F")}
    for step, energy_weight in ((trainer.train_step, 1.0), (trainer.final_train_step, 10.0)):
        state = jax.tree_util.tree_map(jnp.copy, trainer.state)
        _, loss, _ = step(state, frames, rows, jnp.asarray(1.0, jnp.float32))
        assert float(loss) == pytest.approx(energy_weight * mse["E"] + 50.0 * mse["F"], rel=1e-5)


def test_final_stage_settings_are_checked_and_round_trip(tmp_path):
    with pytest.raises(ValueError, match="final_stage must be a fraction"):
        TrainConfig(final_stage=1.0)
    with pytest.raises(ValueError, match="final_energy_weight must be >= 0"):
        TrainConfig(final_energy_weight=-1.0)
    config = TrainConfig(final_stage=0.3, final_energy_weight=25.0)
    config.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json") == config
    args = vars(build_parser().parse_args(["--final-stage", "0.3", "--final-energy-weight", "25"]))
    assert args == {"final_stage": 0.3, "final_energy_weight": 25.0}


@pytest.mark.parametrize("epochs, steps_per_epoch", [(1, 1), (1, 3), (40, 10)])
def test_cosine_schedule_warms_up_from_zero_but_always_steps(epochs, steps_per_epoch):
    """The warm-up starts at lr 0, linear to the peak at `warmup_epochs`, then cosine to final_lr_factor · lr;
    a run of a single step took its only step at lr 0 and never changed the weights."""
    from physnetjax.train.config import TrainConfig
    from physnetjax.train.optim import make_schedule

    config = TrainConfig(schedule="cosine", learning_rate=1e-3, epochs=epochs, warmup_epochs=2, final_lr_factor=0.1)
    schedule = make_schedule(config, steps_per_epoch)
    total = epochs * steps_per_epoch
    rates = np.array([float(schedule(k)) for k in range(total)])
    assert rates[-1] > 0 and rates.max() <= 1e-3 * (1 + 1e-6)
    warmup = min(total - 1, 2 * steps_per_epoch)
    expected = 1e-3 * np.arange(warmup + 1) / warmup if warmup else [1e-3]  # a lone step runs at the peak
    np.testing.assert_allclose(rates[: warmup + 1], expected, rtol=1e-6)


@pytest.mark.parametrize("epochs, warmup, warns", [(1, 1.0, True), (3, 5.0, True), (3, 2.5, False)])
def test_a_cosine_warm_up_as_long_as_the_run_warns(tmp_path, epochs, warmup, warns):
    """With the default 1-epoch warm-up a 1-epoch cosine run only ever raised its learning rate."""
    import warnings

    from physnetjax.errors import InputNotFoundError, PhysNetInputWarning
    from physnetjax.train import train

    config = TrainConfig(schedule="cosine", epochs=epochs, warmup_epochs=warmup, data=[str(tmp_path / "none.npz")],
                         out=str(tmp_path / "run"))
    with warnings.catch_warnings(record=True) as caught, pytest.raises(InputNotFoundError, match="none.npz"):
        warnings.simplefilter("always")
        train(config)
    found = [str(w.message) for w in caught if issubclass(w.category, PhysNetInputWarning)]
    expected = [f"--warmup-epochs {warmup:g} spans the whole --epochs {epochs} run: the learning rate rises from 0 to "
                f"{config.learning_rate:g} at the last step and the cosine decay never starts; set --warmup-epochs "
                f"below {epochs} (e.g. {0.1 * epochs:g}) or another --schedule"]
    assert found == (expected if warns else [])
