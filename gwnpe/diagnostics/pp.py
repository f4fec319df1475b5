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

import json
import logging

import numpy as np
from scipy import stats

from .. import provenance

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


def plot_pp(path, levels: dict[str, np.ndarray], result: dict, labels: dict | None = None) -> None:
    """PP plot with 68/95/99.7% binomial bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = result["n_injections"]
    x = np.linspace(0, 1, 1001)
    fig, ax = plt.subplots(figsize=(6, 6))
    for ci, alpha in ((0.68, 0.25), (0.95, 0.15), (0.997, 0.08)):
        lo, hi = binomial_bands(n, x, ci)
        ax.fill_between(x, lo, hi, color="k", alpha=alpha, lw=0)
    styles = [f"{ls}" for ls in ("-", "--", ":")]
    for i, (k, v) in enumerate(levels.items()):
        v = np.sort(np.asarray(v))
        pp = np.searchsorted(v, x, side="left") / n
        ax.plot(x, pp, styles[(i // 10) % 3], color=f"C{i % 10}",
                label=f"{(labels or {}).get(k, k)} ({result['pvalues'][k]:.3f})")
    ax.plot([0, 1], [0, 1], "k", lw=0.5)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("credible level")
    ax.set_ylabel("fraction of injections within it")
    ax.set_title(f"N = {n}, combined p-value = {result['combined_pvalue']:.4f}")
    ax.legend(fontsize="x-small", loc="upper left")
    fig.tight_layout()
    with provenance.atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130)
    plt.close(fig)


def run_pp_stage(posterior_paths: list, out_json, out_plot, out_table=None, prior_file: str | None = None) -> dict:
    """PP-test over bilby Result files with injection parameters; writes pp.json, pp.png (and a CSV table).

    ``pp.json`` = {"n_injections", "pvalues", "combined_pvalue"} plus ``widths``: the median
    90% credible width of each parameter against its prior width.
    """
    import bilby

    results = [bilby.core.result.read_in_result(str(p)) for p in posterior_paths]
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
    logger.info("PP-test over %d injections: combined p = %.3g; %s", res["n_injections"], res["combined_pvalue"],
                ", ".join(f"{k} {p:.3g}" for k, p in res["pvalues"].items()))
    with provenance.atomic_output(out_json) as tmp:
        tmp.write_text(json.dumps(out, indent=2))
    labels = {k: getattr(priors[k], "latex_label", k) for k in keys}
    plot_pp(out_plot, levels, res, labels)
    if out_table is not None:
        with provenance.atomic_output(out_table) as tmp:
            lines = ["parameter,ks_pvalue,median_90_width,prior_width"]
            lines += [f"{k},{res['pvalues'][k]:.4g},{widths[k]['median_90_width']:.4g},{widths[k]['prior_width']:.4g}" for k in keys]
            lines.append(f"combined (Fisher),{res['combined_pvalue']:.4g},,")
            tmp.write_text("\n".join(lines) + "\n")
    return out
