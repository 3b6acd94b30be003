"""``python -m physnetjax.eval``: see :mod:`physnetjax.eval.cli`."""

import sys

from physnetjax.eval.cli import main

if __name__ == "__main__":
    sys.exit(main())
