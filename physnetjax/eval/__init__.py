"""Evaluating a checkpoint on labelled data: ``python -m physnetjax.eval`` (see :mod:`physnetjax.eval.cli`).

:func:`predict_dataset` runs the model on every frame (batched, jitted, the trainer's
batching); :func:`evaluate` turns predictions and labels into an :class:`EvalResult`
(MAE/RMSE per quantity, per element, per frame, worst frames).
"""

from physnetjax.eval.evaluate import EvalResult, evaluate
from physnetjax.eval.predictions import Predictions, predict_dataset

__all__ = ["EvalResult", "Predictions", "evaluate", "predict_dataset"]
