"""Figures of posteriors: corner plots, the PP plot and the comparison overlay. Each function returns a
matplotlib Figure; :func:`gwnpe.products.common.save_figure` writes it (atomically, at the
resolution its docstring gives) and closes it. The data and training figures are in
:mod:`gwnpe.diagnostics.training_plots`."""

from __future__ import annotations

import numpy as np

from .pp import binomial_bands


def corner_figure(result, parameters: list[str] | None = None):
    """Corner plot of a bilby Result with the injected values marked (bilby's plot_corner; save at dpi 80)."""
    import matplotlib

    matplotlib.use("Agg")

    r = result
    keys = parameters or list(r.search_parameter_keys)
    truth = {k: r.injection_parameters[k] for k in keys} if r.injection_parameters else None
    return r.plot_corner(parameters=truth or keys, save=False, priors=False, quantiles=(0.05, 0.95))


def pp_figure(levels: dict[str, np.ndarray], result: dict, labels: dict | None = None):
    """PP plot with 68/95/99.7% binomial bands (save at dpi 130)."""
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
    return fig


def overlay_figure(rb, ri):
    """Corner plot of bilby (dynesty) ``rb`` and NPE / NPE+IS ``ri`` posteriors (bilby Results) of one injection, truth marked (save at dpi 70)."""
    import corner
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.lines import Line2D

    keys = [k for k in rb.meta_data["gwnpe"]["search_parameters"] if k in ri.posterior]
    truths = [rb.injection_parameters.get(k) for k in keys] if rb.injection_parameters else None
    ranges = []
    for k in keys:
        lo = min(np.percentile(rb.posterior[k], 0.5), np.percentile(ri.posterior[k], 0.5))
        hi = max(np.percentile(rb.posterior[k], 99.5), np.percentile(ri.posterior[k], 99.5))
        ranges.append((lo, hi) if hi > lo else (lo - 1, hi + 1))
    kw = dict(bins=30, smooth=0.9, plot_datapoints=False, plot_density=False, levels=(0.5, 0.9), range=ranges,
              labels=keys)
    layers = [("gwnpe NPE", ri.posterior, None, "tab:blue", "--"),
              ("bilby (dynesty)", rb.posterior, None, "k", "-"),
              ("gwnpe NPE+IS", ri.posterior, ri.posterior["weights"].to_numpy(), "tab:red", "-")]
    fig, handles, skipped = None, [], []
    for label, post, weights, color, ls in layers:
        if len(post) <= len(keys):  # corner needs more samples than dimensions (a budget-capped smoke run)
            skipped.append(f"{label}: only {len(post)} samples")
            continue
        fig = corner.corner(post[keys].to_numpy(), weights=weights, fig=fig, color=color,
                            truths=truths if fig is None else None, truth_color="tab:orange",
                            hist_kwargs={"density": True, "color": color, "ls": ls}, **kw)
        handles.append(Line2D([], [], color=color, ls=ls, label=label))
    fig.legend(handles=handles, loc="upper right", fontsize=14)
    if skipped:
        fig.suptitle("not shown: " + "; ".join(skipped), fontsize=12)
    return fig


def event_figure(result):
    """Corner plot of one event's NPE samples and the same samples importance-weighted (NPE+IS), with the
    ESS in the title (save at dpi 70). ``result``: a bilby Result with a ``weights`` column."""
    import corner
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.lines import Line2D

    post = result.posterior
    keys = [k for k in result.search_parameter_keys if k in post and np.ptp(post[k]) > 0]
    w = post["weights"].to_numpy()
    ranges = [(np.percentile(post[k], 0.5), np.percentile(post[k], 99.5)) for k in keys]
    ranges = [(lo, hi) if hi > lo else (lo - 1, hi + 1) for lo, hi in ranges]
    kw = dict(bins=30, smooth=0.9, plot_datapoints=False, plot_density=False, levels=(0.5, 0.9), range=ranges,
              labels=keys)
    fig = corner.corner(post[keys].to_numpy(), color="tab:blue", hist_kwargs={"density": True, "color": "tab:blue",
                                                                                "ls": "--"}, **kw)
    fig = corner.corner(post[keys].to_numpy(), weights=w, fig=fig, color="tab:red",
                        hist_kwargs={"density": True, "color": "tab:red"}, **kw)
    ess = float(w.sum() ** 2 / (w**2).sum())
    fig.legend(handles=[Line2D([], [], color="tab:blue", ls="--", label="gwnpe NPE"),
                        Line2D([], [], color="tab:red", label=f"gwnpe NPE+IS (ESS {ess:.0f} of {len(w)})")],
               loc="upper right", fontsize=14)
    fig.suptitle(f"{result.label}", fontsize=16)
    return fig


def asd_spread_figure(frequencies: np.ndarray, asds: dict, reference: dict | None = None):
    """The spread of an ASD dataset per detector: median and 5-95% / 0.5-99.5% bands against frequency,
    with each detector's noise curve when given (save at dpi 100)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(asds), figsize=(5.5 * len(asds), 4.2), squeeze=False)
    for ax, (ifo, a) in zip(axes[0], asds.items()):
        a = np.asarray(a, float)
        lo, p5, med, p95, hi = np.percentile(a, [0.5, 5, 50, 95, 99.5], axis=0)
        ax.fill_between(frequencies, lo, hi, color="tab:blue", alpha=0.2, lw=0, label="0.5-99.5%")
        ax.fill_between(frequencies, p5, p95, color="tab:blue", alpha=0.4, lw=0, label="5-95%")
        ax.plot(frequencies, med, color="tab:blue", lw=1, label=f"median of {len(a)}")
        if reference is not None and ifo in reference:
            ax.plot(frequencies, reference[ifo], "k--", lw=1, label="noise curve")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("frequency [Hz]")
        ax.set_ylabel("ASD [1/sqrt(Hz)]")
        ax.set_title(ifo)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def efficiency_figure(efficiency: np.ndarray, reached: np.ndarray, target_ess: float):
    """Histogram of importance-sampling sample efficiencies (log scale) of the accuracy campaign's events,
    those that reached the target ESS apart from those that did not, with the median marked (save at dpi 100)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eff = np.clip(np.asarray(efficiency, float), 1e-6, 1.0)
    reached = np.asarray(reached, bool)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    bins = np.logspace(-6, 0, 25)
    # stacked bars from np.histogram (ax.hist reads two equal-length groups as one 2-D dataset)
    ok, short = np.histogram(eff[reached], bins)[0], np.histogram(eff[~reached], bins)[0]
    widths = np.diff(bins)
    ax.bar(bins[:-1], ok, width=widths, align="edge", color="tab:green", label=f"ESS >= {target_ess:g}")
    ax.bar(bins[:-1], short, width=widths, bottom=ok, align="edge", color="tab:red",
           label=f"ESS < {target_ess:g} at the budget")
    if len(eff):
        ax.axvline(np.median(eff), color="k", ls="--", label=f"median {100 * np.median(eff):.3g}%")
    else:
        ax.set_title("no event reached the campaign's SNR threshold")
    ax.axvline(0.01, color="0.5", ls=":", label="1%")
    ax.set_xscale("log")
    ax.set_xlabel("importance-sampling sample efficiency (ESS / samples)")
    ax.set_ylabel("events")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
