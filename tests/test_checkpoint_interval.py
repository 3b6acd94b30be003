"""Checkpoints written at an interval: the states kept in memory between writes reach the disk unchanged.

The trainer copies every epoch's state to the host and writes the latest one (with a
newer best one before it) only once ``checkpoint_interval_s`` of wall time have passed,
and always at the end or on an exception. Writing at the end only must leave exactly
the checkpoints that writing every epoch leaves.
"""

import os

import numpy as np
import pytest

from physnetjax.checkpoint import load_checkpoint, load_train_state
from physnetjax.train import TrainConfig, Trainer, train

from test_train import leaves, read_rows, tiny_config

MONITORED = {1: 3.0, 2: 1.0, 3: 2.0, 4: 1.5}
"""Validation metric per epoch forced onto the runs: epoch 2 is the best, the last is not."""


def run_recording_writes(out, monkeypatch, **changes) -> list:
    writes = []
    write = Trainer._write_checkpoint

    def recorded(self, directory, *args):
        writes.append(directory.name)
        write(self, directory, *args)

    monkeypatch.setattr(Trainer, "_write_checkpoint", recorded)
    monkeypatch.setattr(Trainer, "_monitored", lambda self, loss, metrics: MONITORED[self.epoch])
    train(tiny_config(out, **changes))
    return writes


def test_writing_at_the_end_leaves_the_same_checkpoints_as_every_epoch(tmp_path, monkeypatch):
    every = tmp_path / "every"
    once = tmp_path / "once"
    assert run_recording_writes(every, monkeypatch, epochs=4, checkpoint_interval_s=0.0) == [
        "epoch-0001", "epoch-0002", "epoch-0003", "epoch-0004"]
    assert run_recording_writes(once, monkeypatch, epochs=4, checkpoint_interval_s=1e9) == ["epoch-0002", "epoch-0004"]
    for out in (every, once):
        assert os.readlink(out / "best").endswith("epoch-0002")
        assert os.readlink(out / "latest").endswith("epoch-0004")
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0002", "epoch-0004"]
    for name in ("best", "latest"):
        assert load_checkpoint(once / name, with_metadata=True)[2]["epoch"] == load_checkpoint(every / name, with_metadata=True)[2]["epoch"]
        for a, b in zip(leaves(load_train_state(every / name)), leaves(load_train_state(once / name))):
            np.testing.assert_array_equal(a, b)


def test_an_exception_writes_the_last_completed_epoch(tmp_path, monkeypatch):
    out = tmp_path / "failed"
    train_epoch = Trainer._train_epoch

    def failing(self, *args):
        if self.epoch == 3:
            raise FloatingPointError("epoch 3: training loss is nan")
        return train_epoch(self, *args)

    monkeypatch.setattr(Trainer, "_train_epoch", failing)
    with pytest.raises(FloatingPointError):
        run_recording_writes(out, monkeypatch, epochs=4, checkpoint_interval_s=1e9)
    assert [r["epoch"] for r in read_rows(out)] == ["1", "2"]
    assert os.readlink(out / "latest").endswith("epoch-0002") and os.readlink(out / "best").endswith("epoch-0002")


def test_checkpoint_interval_must_not_be_negative():
    with pytest.raises(ValueError, match="checkpoint_interval_s must be >= 0 seconds, received -1"):
        TrainConfig(checkpoint_interval_s=-1.0)
