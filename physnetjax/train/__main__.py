"""``python -m physnetjax.train``: see :mod:`physnetjax.train.cli`."""

from physnetjax.cli_errors import exit_process
from physnetjax.train.cli import main

if __name__ == "__main__":
    exit_process(main())
