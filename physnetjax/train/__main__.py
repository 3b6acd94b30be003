"""``python -m physnetjax.train``: see :mod:`physnetjax.train.cli`."""

import sys

from physnetjax.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
