"""One ``--help`` layout and one form of usage error for every command line tool.

Every parser of the package is an :class:`ArgumentParser` (its usage errors are one line,
``PROG: error: MESSAGE (PROG --help lists the options)``, as every other error of the
tools: :mod:`physnetjax.cli_errors`) and passes ``formatter_class=HelpFormatter`` and
``description=describe(__doc__)``. The formatter

* appends ``(default: X)`` to an option's help unless the help already says what the
  default is (contains "default"), the default is ``None``/``False`` (nothing to show)
  or the option is required;
* removes reStructuredText markup (````literal````, ``:mod:`name```) from descriptions
  and help texts, since module docstrings double as descriptions;
* wraps prose paragraphs to the terminal and keeps indented example lines as they are.
"""

from __future__ import annotations

import argparse
import re
import textwrap
from typing import NoReturn

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(text: str) -> str:
    """``text`` without reStructuredText roles and literals: ``:mod:`a.b``` → ``a.b``, ````x```` → ``x``."""
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))


def describe(docstring: str) -> str:
    """The first paragraph of a module docstring as one plain-text line (a parser description)."""
    paragraph = docstring.strip().split("\n\n")[0]
    return plain_text(" ".join(line.strip() for line in paragraph.splitlines()))


def _shows_default(action: argparse.Action) -> bool:
    default = action.default
    return (bool(action.option_strings) and not action.required and default is not None
            and default is not False and default is not argparse.SUPPRESS)


class HelpFormatter(argparse.HelpFormatter):
    """argparse formatter: defaults once, no reST markup, examples kept verbatim (see module docstring)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = plain_text(action.help or "")
        if _shows_default(action) and "default" not in text.lower():
            text = f"{text} (default: %(default)s)" if text else "default: %(default)s"
        return text

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in plain_text(text).split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith(" ") for line in lines[1:]):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(textwrap.fill(" ".join(line.strip() for line in lines), width,
                                                initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(paragraphs)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line on stderr and exit 2.

    ``python -m physnetjax.md`` without ``--geometry`` printed argparse's usage block, 20
    lines of every option, above the line that says what is wrong; now it prints
    ``python -m physnetjax.md: error: the following arguments are required: --geometry
    (python -m physnetjax.md --help lists the options)``. Subcommand parsers made by
    ``add_subparsers`` are of this class too (argparse makes them of the parent's class).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the options)\n")


WEIGHTS_HELP = ("which weights: ema, the checkpoint's saved weights (a trainer checkpoint's EMA weights; a legacy "
                "checkpoint's ema_params); raw, the raw weights (a trainer checkpoint's train state; a legacy "
                "checkpoint's params); default ema")
"""The ``--weights`` help of eval and check (:func:`physnetjax.checkpoint.load_checkpoint`'s ``weights``)."""
