"""Checkpoints: the physnetjax format (orbax + JSON config) and migration of legacy ones."""

from physnetjax.checkpoint.errors import CheckpointError
from physnetjax.checkpoint.format import (
    FORMAT_VERSION,
    UNITS,
    is_checkpoint,
    load_checkpoint,
    load_train_state,
    param_mismatches,
    read_config,
    save_checkpoint,
)
from physnetjax.checkpoint.legacy import LegacyMigration, is_legacy_checkpoint, migrate_legacy

__all__ = [
    "FORMAT_VERSION",
    "UNITS",
    "CheckpointError",
    "LegacyMigration",
    "is_checkpoint",
    "is_legacy_checkpoint",
    "load_checkpoint",
    "load_train_state",
    "migrate_legacy",
    "param_mismatches",
    "read_config",
    "save_checkpoint",
]
