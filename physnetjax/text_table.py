"""Tables for command line reports: rich tables on a terminal, plain columns everywhere else.

A rich table fits itself into the console width; when stdout is a pipe, a file or a CI
log, rich assumes 80 columns and squeezes a long free-text column to nothing. Off a
terminal the reports are therefore printed as plain text: every column padded to its
widest cell and nothing cut, so ``| tee log`` and CI logs stay readable.

Cells are strings (printed literally, never read as markup) or ``rich.text.Text`` objects
carrying a style, e.g. ``Text("PASS", style="green")``; the plain layout prints their text.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence


def plain_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]],
                justify: Optional[Sequence[str]] = None) -> str:
    """The table as text: title, header, a rule, one line per row; columns padded to their widest cell.

    ``justify`` holds "left" or "right" per column (default: all left). Trailing blanks are removed.
    """
    justify = list(justify) if justify is not None else ["left"] * len(header)
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if j == "right" else c.ljust(w)
                         for c, w, j in zip(cells, widths, justify)).rstrip()

    return "\n".join([title, line(header), "  ".join("-" * w for w in widths)] + [line(row) for row in rows])


def _text(cell: Any) -> str:
    return cell if isinstance(cell, str) else cell.plain


def print_table(console: Any, title: str, header: Sequence[str], rows: Sequence[Sequence[Any]],
                justify: Optional[Sequence[str]] = None, wrap: Optional[int] = -1) -> None:
    """Print a table on a ``rich.console.Console``: a rich table on a terminal, :func:`plain_table` otherwise.

    On a terminal every column keeps the width of its widest cell (a header may wrap), except
    column ``wrap`` (an index; default the last, usually free text; None: none), which takes
    the remaining width and wraps, folding a word longer than that width (a path) rather
    than cutting it.
    """
    justify = list(justify) if justify is not None else ["left"] * len(header)
    if not console.is_terminal:
        console.out(plain_table(title, header, [[_text(c) for c in row] for row in rows], justify), highlight=False)
        return
    from rich.table import Table
    from rich.text import Text

    widths = [max((len(_text(row[k])) for row in rows), default=0) for k in range(len(header))]
    wrapping = None if wrap is None else range(len(header))[wrap]
    table = Table(title=title, title_justify="left")
    for k, (name, side, width) in enumerate(zip(header, justify, widths)):
        if k == wrapping:
            table.add_column(name, justify=side, overflow="fold", ratio=1)
        else:
            table.add_column(name, justify=side, no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(*(Text(c) if isinstance(c, str) else c for c in row))
    console.print(table)


def print_line(console: Any, text: Any) -> None:
    """Print one line (a string, printed literally, or a styled ``rich.text.Text``); unwrapped off a terminal."""
    if console.is_terminal:
        from rich.text import Text

        console.print(Text(text) if isinstance(text, str) else text)
    else:
        console.out(_text(text), highlight=False)
