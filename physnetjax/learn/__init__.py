"""Active learning: ``python -m physnetjax.learn`` (see :mod:`physnetjax.learn.loop`).

Rooms: :mod:`~physnetjax.learn.config` (settings), :mod:`~physnetjax.learn.explore` (MD
with the ensemble), :mod:`~physnetjax.learn.selection` (uncertain and diverse frames),
:mod:`~physnetjax.learn.labellers` (GFN2-xTB or any callable), :mod:`~physnetjax.learn.inputs`
(checks of the starting labels against the labeller), :mod:`~physnetjax.learn.frames` (datasets
on disk), :mod:`~physnetjax.learn.state` (resumption), :mod:`~physnetjax.learn.evaluate` (test
error), :mod:`~physnetjax.learn.report` (report and plot).
"""

from physnetjax.learn.config import LearnConfig
from physnetjax.learn.labellers import xtb_labeller
from physnetjax.learn.loop import run_learning
from physnetjax.learn.selection import aligned_rmsd, select_uncertain_diverse

__all__ = ["LearnConfig", "aligned_rmsd", "run_learning", "select_uncertain_diverse", "xtb_labeller"]
