"""``python -m physnetjax.train``: see :mod:`physnetjax.train.cli`."""

from physnetjax.train.cli import main

if __name__ == "__main__":
    main()
