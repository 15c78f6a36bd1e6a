"""Paired bootstrap over test samples: a model against a reference that answered the same samples.

The reference is a trivial answer (copy the demo, the mean training box, always "Yes") or another run's predictions.
Both are scored on the same samples, so each resample draws one set of sample indices for both
(``scipy.stats.bootstrap(paired=True)``) and recomputes the metric for each: a mean of per-sample values (IoU,
F1-Theme) or a metric of summed counts (F1-State, recomputed from the resampled confusion counts, not averaged).
The interval is the percentile 95% interval of ``model - reference``, as the metrics' own CIs
(:func:`lego_arta.metrics.bootstrap_ci`); the model *beats* the reference when its lower bound is above 0.

Light: numpy and scipy only (``experiments/score.py`` stays free of torch).

>>> m = np.array([[0.5], [0.75], [1.0]]); r = np.array([[0.25], [0.5], [0.75]])
>>> p = paired_bootstrap(m, r, mean_metric, n_resamples=200, seed=0)
>>> p.model, p.reference, p.diff, round(p.low, 6), round(p.high, 6), p.beats  # better by 25 on every sample
(75.0, 50.0, 25.0, 25.0, 25.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final, NamedTuple

import numpy as np
from scipy import stats

CONFIDENCE: Final = 0.95
_BATCH_VALUES: Final = 2_000_000  # resampled values held at once (resamples x samples), as bootstrap_ci chunks

# a metric of per-sample fields: array (fields, ..., samples) -> array (...), reducing the last axis
Metric = Callable[[np.ndarray], np.ndarray]


class Paired(NamedTuple):
    """A model against a reference on the same ``n`` samples (x100 metrics): both values, ``diff`` = model -
    reference, and the ``low`` / ``high`` bounds of its paired bootstrap interval (NaN without one)."""

    model: float
    reference: float
    diff: float
    low: float
    high: float
    n: int

    @property
    def beats(self) -> bool:
        """The model beats the reference: the interval's lower bound is above 0 (False without an interval)."""
        return self.low > 0


def mean_metric(fields: np.ndarray) -> np.ndarray:
    """x100 mean of the first field over the samples (the last axis): IoU, F1-Theme, ..."""
    return 100.0 * fields[0].mean(axis=-1)


def paired_bootstrap(
    model: np.ndarray,
    reference: np.ndarray,
    metric: Metric,
    *,
    n_resamples: int,
    seed: int,
    confidence: float = CONFIDENCE,
) -> Paired:
    """``metric(model) - metric(reference)`` with its paired percentile bootstrap interval.

    Args:
        model: per-sample fields of the model, shape (samples, fields).
        reference: the reference's fields on the same samples, in the same order and shape.
        metric: maps fields (fields, ..., samples) to the metric (...): :func:`mean_metric`, or a metric of summed
            counts.
        n_resamples: bootstrap resamples; 0 gives no interval (``low`` / ``high`` NaN).
        seed: seed of the resampling (``numpy.random.default_rng``).
        confidence: confidence level of the interval.

    Raises:
        ValueError: the two arrays differ in shape or are not 2-D.

    Fewer than 2 samples give no interval either (``scipy.stats.bootstrap`` needs two).
    """
    m, r = np.asarray(model, dtype=float), np.asarray(reference, dtype=float)
    if m.ndim != 2 or m.shape != r.shape:
        raise ValueError(f"model {m.shape} and reference {r.shape}: expected two (samples, fields) arrays alike")
    n, k = m.shape
    value_m, value_r = (float(metric(x.T)) if n else math.nan for x in (m, r))
    low = high = math.nan
    if n >= 2 and n_resamples > 0:

        def statistic(*fields: np.ndarray, axis: int) -> np.ndarray:
            stacked = np.stack([np.moveaxis(f, axis, -1) for f in fields])
            return metric(stacked[:k]) - metric(stacked[k:])

        result = stats.bootstrap(
            (*m.T, *r.T),
            statistic,
            paired=True,
            vectorized=True,
            n_resamples=n_resamples,
            batch=max(1, _BATCH_VALUES // n),
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return Paired(value_m, value_r, value_m - value_r, low, high, n)
