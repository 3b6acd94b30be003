"""The exception type of the checkpoint package (and its subclass for a path that does not exist)."""

from physnetjax.errors import InputNotFoundError, OutputPathError


class CheckpointError(ValueError):
    """A path is not a readable checkpoint: missing, corrupted, incomplete, or too new.

    The message names the path and the problem (which file is missing or truncated,
    which format version was found, which legacy attribute cannot be honoured).
    """


class CheckpointNotFoundError(CheckpointError, InputNotFoundError):
    """The checkpoint path does not exist."""


class CheckpointOverwriteError(CheckpointError, OutputPathError):
    """``overwrite`` refused: the target directory is not a checkpoint alone (a training run, other files); an
    output refused (command-line exit status 3)."""


class CheckpointExistsError(CheckpointOverwriteError, FileExistsError):
    """The checkpoint path exists and ``overwrite`` was not given (a ``FileExistsError`` too, as it always was)."""


class CheckpointWriteError(CheckpointError, OutputPathError):
    """A checkpoint cannot be written where asked (its folder cannot be created, the write failed or was left
    incomplete); nothing was put under the requested name and an existing checkpoint there is unchanged."""
