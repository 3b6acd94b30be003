"""The evaluation report as text: rich tables on a terminal, a plain aligned layout elsewhere.

Three tables: metrics (quantity, unit, MAE, RMSE, compared entries), force errors per
element, and the worst frames. When stdout is not a terminal (CI logs, ``| tee``,
files) every table is printed as plain columns padded to their widest cell, so no
column is ever cut.
"""

from __future__ import annotations

import math
import sys

from physnetjax.eval.evaluate import QUANTITIES, EvalResult


def _number(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def tables(result: EvalResult) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table, cells as strings."""
    metric_rows = [[QUANTITIES[q][0], QUANTITIES[q][1], _number(result.metrics[f"{q}_mae"]),
                    _number(result.metrics[f"{q}_rmse"]), str(result.counts[q])]
                   for q in QUANTITIES if f"{q}_mae" in result.metrics]
    element_rows = [[symbol, str(e["atoms"]), _number(e["mae"]), _number(e["rmse"])]
                    for symbol, e in result.element_forces.items()]
    frames = result.frames
    worst_rows = []
    for criterion, indices in (("forces", result.worst_forces), ("energy", result.worst_energy)):
        for rank, k in enumerate(indices, 1):
            worst_rows.append([f"{criterion} #{rank}", str(frames["source"][k]), str(frames["num_atoms"][k]),
                               _number(frames["energy_error"][k]), _number(frames["forces_mae"][k]),
                               _number(frames["forces_max_atom_error"][k])])
    uncertainty = result.uncertainty or {}
    uncertainty_rows = [[what, _number(uncertainty.get(key))] for what, key in UNCERTAINTY_ROWS if uncertainty]
    return [
        ("errors (prediction − reference)", ["quantity", "unit", "MAE", "RMSE", "count"], metric_rows),
        ("force errors per element (eV/Å)", ["element", "atoms", "MAE", "RMSE"], element_rows),
        ("worst frames", ["by", "frame", "atoms", "ΔE / eV", "F MAE / eV/Å", "max |ΔF_i| / eV/Å"], worst_rows),
        ("ensemble spread against error", ["measure", "value"], uncertainty_rows),
    ]


UNCERTAINTY_ROWS = (
    ("force error / calibrated spread (1: calibration holds)", "force_error_over_spread"),
    ("force NLL per atom", "force_nll_per_atom"),
    ("Spearman ρ: max forces_std vs force RMSE per frame", "spearman_max_forces_std_vs_force_rmse"),
    ("Spearman ρ: energy_std vs |ΔE|", "spearman_energy_std_vs_abs_energy_error"),
)
"""Rows of the ensemble table (:attr:`~physnetjax.eval.evaluate.EvalResult.uncertainty`; one model: no table)."""


def plain(title: str, header: list[str], rows: list[list[str]]) -> str:
    """A table as text: columns padded to their widest cell, never truncated."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def render(result: EvalResult, stream=None) -> None:
    """Print the tables to ``stream`` (default stdout): rich on a terminal, :func:`plain` otherwise.

    On a narrow terminal only the frame names wrap; numbers keep their full width.
    """
    stream = sys.stdout if stream is None else stream
    parts = [t for t in tables(result) if t[2]]
    if not stream.isatty():
        stream.write("\n\n".join(plain(*t) for t in parts) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream)
    for title, header, rows in parts:
        table = Table(title=title, title_justify="left")
        widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
        for name, width in zip(header, widths):
            if name == "frame":
                table.add_column(name, overflow="fold")
            else:
                table.add_column(name, no_wrap=True, min_width=width)
        for row in rows:
            table.add_row(*row)
        console.print(table)
