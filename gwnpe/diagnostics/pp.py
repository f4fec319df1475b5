"""PP-test: are the posteriors calibrated over an injection campaign?

For each parameter, the credible level of the true value is the fraction of
posterior samples below it (bilby's definition). If the posteriors are calibrated
the levels are uniform on [0, 1]: a Kolmogorov-Smirnov test per parameter, and
Fisher's method (``scipy.stats.combine_pvalues``) for all parameters together,
exactly as ``bilby.core.result.make_pp_plot`` computes them.

Caveat: with N injections the KS test only detects CDF deviations above about
1.63/sqrt(N) at p = 0.01 (0.115 for N = 200); over-wide posteriors of an
under-trained network can pass it. The posterior width is therefore reported too.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import stats

logger = logging.getLogger(__name__)


def credible_levels(samples: np.ndarray, truth: float) -> float:
    """Fraction of ``samples`` below ``truth``."""
    return float(np.sum(np.asarray(samples) < truth) / len(samples))


def pp_test(levels: dict[str, np.ndarray]) -> dict:
    """KS p-value per parameter and Fisher's combined p-value."""
    pvalues = {k: float(stats.kstest(np.asarray(v), "uniform").pvalue) for k, v in levels.items()}
    combined = float(stats.combine_pvalues(list(pvalues.values()))[1])
    return {"n_injections": int(len(next(iter(levels.values())))), "pvalues": pvalues, "combined_pvalue": combined}


def binomial_bands(n: int, x: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """Range of the empirical CDF of n uniform draws at ``x`` with probability ``ci``."""
    edge = (1.0 - ci) / 2.0
    lo = stats.binom.ppf(edge, n, x) / n
    hi = stats.binom.ppf(1 - edge, n, x) / n
    lo[0] = hi[0] = 0.0
    return lo, hi


def pp_summary(results: list) -> tuple[dict, dict, dict]:
    """PP-test of bilby Results that carry injection parameters.

    Returns
    -------
    levels : dict parameter -> (N,) credible levels of the true values
    summary : dict
        :func:`pp_test`'s result plus ``widths`` (median 90% credible width of each parameter and
        its prior width) and ``sampling_time_per_event`` (median over the results' meta data, or None).
    labels : dict parameter -> LaTeX label of its prior
    """
    keys = list(results[0].search_parameter_keys)
    levels = {k: np.array([credible_levels(r.posterior[k].values, r.injection_parameters[k]) for r in results]) for k in keys}
    res = pp_test(levels)
    widths = {}
    priors = results[0].priors
    for k in keys:
        w90 = np.array([np.subtract(*np.percentile(r.posterior[k].values, [95, 5])) for r in results])
        prior_width = float(priors[k].maximum - priors[k].minimum) if hasattr(priors[k], "maximum") else float("nan")
        widths[k] = {"median_90_width": float(np.median(w90)), "prior_width": prior_width}
    times = [r.meta_data.get("gwnpe", {}).get("sampling_time_per_event") for r in (results if isinstance(results[0].meta_data, dict) else [])]
    times = [float(t) for t in times if t is not None]
    out = {**res, "widths": widths, "sampling_time_per_event": float(np.median(times)) if times else None}
    labels = {k: getattr(priors[k], "latex_label", k) for k in keys}
    return levels, out, labels
