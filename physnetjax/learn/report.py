"""The loop's final report: one row per round, printed, saved as ``report.json`` and plotted.

Per round: labelled frames (``frames``: the round's data set, training and validation frames together, the
loop's labelling budget) and how they were split (``train_frames``, ``valid_frames``; ``n/a`` in a run written
before they were recorded), frames selected, mean and max of the MD's per-frame force
spread (eV/Å; over every saved frame of every temperature), MD runs that blew up,
MD frames cut as unphysical (:mod:`physnetjax.learn.physical`, never candidates),
frames the labeller could not label (skipped),
validation force MAE of the trainer (EMA weights of ``best``) and, with a test set,
the test energy and force MAE of the member mean. ``learning_curve.png`` plots the
force MAE (test, else validation) against the number of labelled frames; it is
skipped, with a note in the log, when matplotlib is missing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from physnetjax.jsonlines import write_json, written_whole

logger = logging.getLogger(__name__)


def report_rows(rounds: list) -> list[dict]:
    """The report's rows from the rounds' summaries (:func:`physnetjax.learn.loop.run_learning`)."""
    rows = []
    for summary in rounds:
        test = summary.get("test") or {}
        rows.append({
            "round": summary["round"],
            "frames": summary["frames"],
            "train_frames": summary.get("train_frames"),
            "valid_frames": summary.get("valid_frames"),
            "selected": summary["selected"],
            "md_mean_spread_eV_per_A": summary.get("md_mean_spread_eV_per_A"),
            "md_max_spread_eV_per_A": summary.get("md_max_spread_eV_per_A"),
            "md_blow_ups": sum(run["blew_up"] is not None for run in summary["md"]),
            "unphysical_frames": sum(run.get("unphysical_frames", 0) for run in summary["md"]),
            "label_failures": len(summary.get("label_failures", [])),
            "valid_forces_mae": summary["valid"].get("forces_mae"),
            "test_energy_mae": test.get("energy_mae"),
            "test_forces_mae": test.get("forces_mae"),
        })
    return rows


def report_lines(rows: list[dict]) -> list[str]:
    """A fixed-width table of ``rows`` (n/a where a value does not apply)."""
    header = ("round  frames  train  valid  selected  unphysical  unlabelled  MD spread mean/max (eV/Å)  blow-ups  valid F MAE  "
              "test F MAE  test E MAE")
    lines = [header]
    for row in rows:
        lines.append(f"{row['round']:>5d}  {row['frames']:>6d}  {_count(row['train_frames']):>5s}  "
                     f"{_count(row['valid_frames']):>5s}  {row['selected']:>8d}  "
                     f"{row['unphysical_frames']:>10d}  {row['label_failures']:>10d}  "
                     f"{_fmt(row['md_mean_spread_eV_per_A']):>12s} / {_fmt(row['md_max_spread_eV_per_A']):<12s} "
                     f"{row['md_blow_ups']:>8d}  {_fmt(row['valid_forces_mae']):>11s}  "
                     f"{_fmt(row['test_forces_mae']):>10s}  {_fmt(row['test_energy_mae']):>10s}")
    return lines


def write_report(run_dir, rounds: list) -> dict:
    """Write ``report.json`` (atomically) and ``learning_curve.png``; returns ``{"rounds": rows, "plot": path|None}``."""
    run_dir = Path(run_dir)
    rows = report_rows(rounds)
    report = {"rounds": rows, "plot": _plot(rows, run_dir / "learning_curve.png")}
    write_json(run_dir / "report.json", report)
    return report


def _plot(rows: list[dict], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no learning-curve plot (pip install matplotlib)")
        return None
    key, label = (("test_forces_mae", "test") if all(r["test_forces_mae"] is not None for r in rows)
                  else ("valid_forces_mae", "validation"))
    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.plot([r["frames"] for r in rows], [r[key] for r in rows], "o-")
    for r in rows:
        axis.annotate(str(r["round"]), (r["frames"], r[key]), textcoords="offset points", xytext=(4, 4))
    axis.set_xlabel("labelled frames (training + validation)")
    axis.set_ylabel(f"{label} force MAE (eV/Å)")
    axis.set_title("active learning (labels: round)")
    figure.tight_layout()
    with written_whole(path, also_kept="every finished round is kept in state.json: rerun the same command to "
                                        "write the report") as tmp:
        figure.savefig(tmp, dpi=120)
    plt.close(figure)
    return str(path)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _count(value) -> str:
    return "n/a" if value is None else f"{value:d}"
