"""Time-budgeted training (--max-time) driven by a fake clock: the schedule ends exactly at the budget,
the estimate follows a change of speed, resume continues the same schedule.

The fake clock advances a fixed number of seconds per training step (validation and
checkpoints take no fake time) plus, on the first step of every Trainer, a fake
compile time that the estimate must leave out. Expected learning rates come from
the schedule formulas written out here, at the progress the budget implies.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from physnetjax.checkpoint import load_checkpoint, load_train_state
from physnetjax.train import TrainConfig, Trainer, resume
from physnetjax.train.timebudget import TimeBudget, progress_factor

from test_train import check_plateau_rates, leaves, read_rows, tiny_config

STEPS_PER_EPOCH = 6  # TINY: 24 training frames, batch 4
LR, FINAL, WARMUP_FRACTION = 1e-2, 0.1, 0.1
COSINE = dict(schedule="cosine", epochs=10, warmup_epochs=1.0, final_lr_factor=FINAL)


class Interrupted(Exception):
    pass


class FakeClock:
    """Seconds advanced by training steps: ``seconds_per_step(step)`` each, plus ``compile_seconds`` on a
    Trainer's first step; raises :class:`Interrupted` before step ``stop_at`` (1-based, global).

    ``slow_methods`` {Trainer method name: (seconds, first-call compile seconds)} advance it on those calls too.
    """

    def __init__(self, seconds_per_step, compile_seconds=100.0, stop_at=None, start=1000.0, slow_methods=None):
        self.now, self.seconds_per_step, self.compile_seconds = start, seconds_per_step, compile_seconds
        self.stop_at, self.steps, self.slow_methods = stop_at, 0, slow_methods or {}

    def __call__(self):
        return self.now

    def wrap(self, trainer):
        step, first = trainer.train_step, [True]

        def timed_step(state, batch, labels, scale):
            self.steps = int(state.step) + 1
            if self.stop_at is not None and self.steps >= self.stop_at:
                raise Interrupted
            self.now += self.seconds_per_step(self.steps) + (self.compile_seconds if first[0] else 0.0)
            first[0] = False
            return step(state, batch, labels, scale)

        trainer.train_step = timed_step
        for name, (seconds, compile_seconds) in self.slow_methods.items():
            setattr(trainer, name, self._slow(getattr(trainer, name), seconds, compile_seconds))
        return trainer

    def _slow(self, method, seconds, compile_seconds):
        calls = []

        def slow_method(*args, **kwargs):
            self.now += seconds + (0.0 if calls else compile_seconds)
            calls.append(None)
            return method(*args, **kwargs)

        return slow_method


def run_timed(out, clock, resuming=False, **changes):
    if resuming:
        config = TrainConfig.load(out / "config.json")
    else:
        config = tiny_config(out, **changes)
        out.mkdir(parents=True)
        config.save(out / "config.json")
    return clock.wrap(Trainer(config, out, resuming=resuming, clock=clock)).run()


def cosine_lr(progress):
    """lr · p / w in the warm-up, then cosine from lr to FINAL · lr at p = 1."""
    if progress < WARMUP_FRACTION:
        return LR * progress / WARMUP_FRACTION
    phase = (progress - WARMUP_FRACTION) / (1.0 - WARMUP_FRACTION)
    return LR * (FINAL + (1.0 - FINAL) * 0.5 * (1.0 + math.cos(math.pi * phase)))


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory):
    """1 s per step, 6 steps per epoch, 30 s budget: exactly 5 epochs."""
    out = tmp_path_factory.mktemp("budget") / "uninterrupted"
    summary = run_timed(out, FakeClock(lambda step: 1.0), max_time=30.0, **COSINE)
    return out, summary


def test_schedule_ends_exactly_at_the_budget(budget_run):
    out, summary = budget_run
    rows = read_rows(out)
    assert summary["stop_reason"] == "max_time"
    assert summary["epochs_run"] == 5 and summary["train_time_s"] == pytest.approx(30.0, abs=1e-9)
    assert int(np.asarray(load_train_state(out / "latest")["step"])) == 5 * STEPS_PER_EPOCH
    lrs = [float(r["lr"]) for r in rows]
    np.testing.assert_allclose(lrs, [cosine_lr(epoch / 5) for epoch in range(1, 6)], rtol=1e-9)
    assert lrs[-1] == pytest.approx(FINAL * LR, rel=1e-12)
    _, params, meta = load_checkpoint(out / "best", with_metadata=True)
    assert int(meta["epoch"]) == summary["best_epoch"] and int(rows[summary["best_epoch"] - 1]["best"]) == 1
    state = load_train_state(out / "best")
    for saved, ema in zip(leaves(params), leaves(state["ema_params"])):
        np.testing.assert_array_equal(saved, ema)


@pytest.mark.parametrize("slow_then_fast, budget, epochs, used", [
    (False, 36.0, 3, 30.0),  # 1 s/step, then 2 s/step: 6 + 12 s, then one 12 s epoch fits in the 18 s left
    (True, 48.0, 7, 48.0),   # 2 s/step, then 1 s/step: 12 + 6 s (planned as 12 s), then 5 × 6 s
])
def test_estimate_follows_a_change_of_speed(tmp_path, slow_then_fast, budget, epochs, used):
    def seconds_per_step(step):
        first_epoch = step <= STEPS_PER_EPOCH
        return (2.0 if first_epoch else 1.0) if slow_then_fast else (1.0 if first_epoch else 2.0)

    summary = run_timed(tmp_path / "speed", FakeClock(seconds_per_step), max_time=budget, **COSINE)
    rows = read_rows(tmp_path / "speed")
    assert summary["stop_reason"] == "max_time"
    assert summary["epochs_run"] == epochs and summary["train_time_s"] == pytest.approx(used, abs=1e-9)
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[-1] == pytest.approx(FINAL * LR, rel=1e-12)
    assert all(later <= earlier for earlier, later in zip(lrs, lrs[1:]))


def test_compilation_and_force_check_are_not_counted(tmp_path):
    """Validation takes 1 s (plus 50 s of compilation on a Trainer's first call), the force check 0.5 s (plus 30 s).
    A 30 s budget at 6 s of steps per epoch: epoch 1 counts its steps only (6 s, D = 6 s); epoch 2 counts 7 s
    (validation in, force check out) and sets D = 7 s; epochs 3 and 4 fit (T = 27 s), with p = 1 at the end of
    epoch 4. On main the first epoch counted 87 s and the run stopped after it at p = 0.2."""
    clock = FakeClock(lambda step: 1.0, slow_methods={"evaluate": (1.0, 50.0), "_force_check": (0.5, 30.0)})
    summary = run_timed(tmp_path / "run", clock, max_time=30.0, **COSINE)
    rows = read_rows(tmp_path / "run")
    assert summary["stop_reason"] == "max_time"
    assert summary["epochs_run"] == 4 and summary["train_time_s"] == pytest.approx(27.0, abs=1e-9)
    assert float(rows[-1]["lr"]) == pytest.approx(FINAL * LR, rel=1e-12)
    assert int(rows[0]["best"]) == 1 and sum(int(r["best"]) for r in rows) >= 2


def test_an_epoch_of_one_step_is_not_counted_with_its_compilation(tmp_path):
    """One step per epoch (batch 24 = the 24 training frames), 1 s each plus 100 s of compilation on the first:
    that step cannot be split into compilation and run, so it counts 0 and D comes from epoch 2 (p and the warm-up
    learning rate stay 0 for those two steps); then 30 epochs of 1 s fill the 30 s budget and the last ends at the
    schedule's end value. On main epoch 1 counted 101 s and the run stopped after it at learning rate 0 (the
    learning loop's rounds, 8 training frames at batch 16, then trained ~400 epochs at the end value, 1/50 of it)."""
    summary = run_timed(tmp_path / "run", FakeClock(lambda step: 1.0), max_time=30.0, batch_size=24, **COSINE)
    lrs = [float(r["lr"]) for r in read_rows(tmp_path / "run")]
    assert summary["stop_reason"] == "max_time"
    assert summary["epochs_run"] == 31 and summary["train_time_s"] == pytest.approx(30.0, abs=1e-9)
    assert lrs[:2] == [0.0, 0.0] and lrs[2] > 0.0
    assert lrs[-1] == pytest.approx(FINAL * LR, rel=1e-12)
    assert all(later <= earlier for earlier, later in zip(lrs[5:], lrs[6:]))  # past the warm-up (p = 0.1)


def test_a_plateau_run_under_a_time_budget_logs_and_steps_with_its_reduced_rate(tmp_path):
    """--schedule plateau with --max-time (the learning rate then comes from the budget's progress, a factor 1 for
    plateau, times the plateau's scale): 36 s at 6 s per epoch, patience 0, factor 0.5. The logged rates follow the
    plateau rule replayed on the logged losses, and the steps use them: the same run with factor 1 trains other
    parameters from the first reduction on (:func:`test_train.check_plateau_rates`)."""
    settings = dict(schedule="plateau", plateau_patience=0, learning_rate=0.05, epochs=10, decay_rate=0.1,
                    decay_epochs=100.0, max_time=36.0)  # the defaults, not TINY's exponential decay
    summary = run_timed(tmp_path / "halved", FakeClock(lambda step: 1.0), plateau_factor=0.5, **settings)
    assert summary["stop_reason"] == "max_time" and summary["epochs_run"] == 6
    run_timed(tmp_path / "kept", FakeClock(lambda step: 1.0), plateau_factor=1.0, **settings)
    check_plateau_rates(read_rows(tmp_path / "halved"), read_rows(tmp_path / "kept"))


def test_progress_factor_formulas():
    exponential = TrainConfig(schedule="exponential", epochs=10, decay_rate=0.5, decay_epochs=5.0)
    assert [progress_factor(exponential, p) for p in (0.0, 0.5, 1.0, 1.5)] == [1.0, 0.5, 0.25, 0.25]
    cosine = TrainConfig(**COSINE)
    assert progress_factor(cosine, 0.05) == pytest.approx(0.5, rel=1e-12)
    assert progress_factor(cosine, 0.55) == pytest.approx(FINAL + (1 - FINAL) / 2, rel=1e-12)
    assert progress_factor(cosine, 1.0) == pytest.approx(FINAL, rel=1e-12)
    assert progress_factor(TrainConfig(schedule="plateau"), 0.7) == 1.0
    with pytest.raises(ValueError, match="max_time must be > 0"):
        TrainConfig(max_time=0.0)


def test_progress_never_goes_back_when_epochs_get_faster():
    """48 s budget, a 12 s epoch, then 6 s ones. Planned on 12 s epochs, epoch 2 runs p = (12 + 12 k/6)/48 to 0.5;
    re-planned on 6 s epochs from T = 18 s, epoch 3 would restart at p = 19/48 < 0.5 (the learning rate would rise
    again): p stays 0.5 until the new plan passes it, at the end of epoch 3, and goes on from there."""
    budget = TimeBudget(budget=48.0)
    budget.finish_epoch(12.0)
    assert [budget.step_progress(k, 6) for k in (3, 6)] == [pytest.approx(18 / 48), pytest.approx(24 / 48)]
    budget.finish_epoch(6.0)
    assert [budget.step_progress(k, 6) for k in range(1, 7)] == pytest.approx([0.5] * 6, abs=1e-15)
    budget.finish_epoch(6.0)
    assert budget.step_progress(3, 6) == pytest.approx(27 / 48)


def test_early_stopping_counts_patience_as_a_fraction_of_the_budget():
    """patience 2 of epochs 10 with a 30 s budget: stop once 6 s of training brought no improvement."""
    config = TrainConfig(epochs=10, patience=2, max_time=30.0)
    budget = TimeBudget(30.0, elapsed=12.0, epoch_seconds=2.0, best_elapsed=7.0)
    trainer = SimpleNamespace(config=config, budget=budget, epoch=6)
    assert Trainer._stop_reason(trainer) is None
    budget.elapsed = 13.0
    assert Trainer._stop_reason(trainer) == "early_stopping"
    budget.elapsed, budget.epoch_seconds, budget.best_elapsed = 29.0, 2.0, 29.0
    assert Trainer._stop_reason(trainer) == "max_time"


def test_resume_continues_the_same_schedule(budget_run, tmp_path):
    out, _ = budget_run
    interrupted = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        run_timed(interrupted, FakeClock(lambda step: 1.0, stop_at=2 * STEPS_PER_EPOCH + 3), max_time=30.0,
                  **COSINE)
    assert [r["epoch"] for r in read_rows(interrupted)] == ["1", "2"]
    summary = run_timed(interrupted, FakeClock(lambda step: 1.0, start=5e4), resuming=True)
    assert summary["epochs_run"] == 5 and summary["train_time_s"] == pytest.approx(30.0, abs=1e-9)
    np.testing.assert_allclose([float(r["lr"]) for r in read_rows(interrupted)],
                               [float(r["lr"]) for r in read_rows(out)], rtol=1e-12)
    for a, b in zip(leaves(load_train_state(out / "latest")), leaves(load_train_state(interrupted / "latest"))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_resume_cannot_add_a_budget_to_an_epoch_run(tmp_path):
    out = tmp_path / "epochs"
    summary = run_timed(out, FakeClock(lambda step: 1.0), epochs=1, schedule="constant")
    assert summary["stop_reason"] == "epochs" and summary["train_time_s"] is None
    config = TrainConfig.load(out / "config.json")
    config.max_time = 10.0
    with pytest.raises(ValueError, match="not trained with a time budget"):
        Trainer(config, out, resuming=True)
    saved = (out / "config.json").read_text()
    for _ in range(2):  # on main the refused resume saved max_time, and every later resume was refused
        with pytest.raises(ValueError, match="not trained with a time budget"):
            resume(out, max_time=10.0)
        assert (out / "config.json").read_text() == saved
    assert resume(out, epochs=2)["epochs_run"] == 2
