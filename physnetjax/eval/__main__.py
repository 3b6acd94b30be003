"""``python -m physnetjax.eval``: see :mod:`physnetjax.eval.cli`."""

from physnetjax.cli_errors import exit_process
from physnetjax.eval.cli import main

if __name__ == "__main__":
    exit_process(main())
