"""Figures of the data and training stages: PSD estimates, basis mismatch, loss curves. Each function
returns a matplotlib Figure; :func:`gwnpe.products.common.save_figure` writes it (atomically, at the
resolution its docstring gives) and closes it."""

from __future__ import annotations

import numpy as np


def psd_figure(
    freqs: np.ndarray,
    psd: np.ndarray,
    reference: np.ndarray | None,
    ifo: str,
    f_min: float,
    f_max: float,
):
    """The estimated ASD against the reference curve, log-log, with their ratio (save at dpi 100).

    Parameters
    ----------
    freqs, psd : ndarray
        Frequencies [Hz] and estimated PSD [1/Hz].
    reference : ndarray or None
        Reference PSD [1/Hz] on ``freqs`` (non-finite bins are not drawn).
    ifo : str
        Detector name, for the title.
    f_min, f_max : float
        Analysis band [Hz]; frequencies outside it are shaded.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure


    freqs = np.asarray(freqs, dtype=np.float64)
    psd = np.asarray(psd, dtype=np.float64)
    has_ref = reference is not None and np.isfinite(reference).any()
    fig = Figure(figsize=(7, 6.5 if has_ref else 4.5))
    FigureCanvasAgg(fig)
    if has_ref:
        ax, axr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    else:
        ax, axr = fig.subplots(1, 1), None
    ok = (freqs > 0) & np.isfinite(psd) & (psd > 0)
    ax.loglog(freqs[ok], np.sqrt(psd[ok]), lw=0.7, color="C0", label=f"{ifo} Welch estimate")
    if has_ref:
        reference = np.asarray(reference, dtype=np.float64)
        rok = (freqs > 0) & np.isfinite(reference) & (reference > 0)
        ax.loglog(freqs[rok], np.sqrt(reference[rok]), lw=1.2, color="k", ls="--", label="reference curve")
        both = ok & rok
        axr.semilogx(freqs[both], psd[both] / reference[both], lw=0.5, color="C0")
        axr.axhline(1.0, color="k", ls="--", lw=1)
        inband = both & (freqs >= f_min) & (freqs <= f_max)
        if inband.any():
            r = psd[inband] / reference[inband]
            lo, hi = np.percentile(r, [0.5, 99.5])
            axr.set_ylim(min(lo, 0.8) * 0.95, max(hi, 1.2) * 1.05)
        axr.set_ylabel("estimate / reference")
        axr.set_xlabel("Frequency [Hz]")
    else:
        ax.set_xlabel("Frequency [Hz]")
    x_lo = max(freqs[ok][0] if ok.any() else f_min / 2, f_min / 4)
    x_hi = freqs[-1]
    for a in (ax, axr) if axr is not None else (ax,):
        a.axvspan(x_lo, f_min, color="0.85", zorder=0)
        if f_max < x_hi:
            a.axvspan(f_max, x_hi, color="0.85", zorder=0)
        a.set_xlim(x_lo, x_hi)
        a.grid(True, which="both", alpha=0.3)
    inband = ok & (freqs >= f_min) & (freqs <= f_max)
    if inband.any():
        asd_band = np.sqrt(psd[inband])
        ax.set_ylim(asd_band.min() / 3, asd_band.max() * 3)
    ax.set_ylabel(r"ASD [1/$\sqrt{\mathrm{Hz}}$]")
    ax.set_title(f"{ifo} noise ASD (analysis band {f_min:g}-{f_max:g} Hz unshaded)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def mismatch_figure(curve: dict, tolerance: float):
    """Held-out mismatch (max, 99th percentile, median) against basis size (save at dpi 120)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    fig, ax = plt.subplots(figsize=(6, 4))
    floor = 1e-16
    for key, style in (("max", "-"), ("p99", "--"), ("median", ":")):
        ax.semilogy(curve["basis_size"], np.maximum(curve[key], floor), style, label=key)
    for key in (k for k in curve if k.startswith("max_")):
        ax.semilogy(curve["basis_size"], np.maximum(curve[key], floor), "-", lw=0.8, alpha=0.6,
                    label=f"max, whitened by {key[4:]} ASD (info)")
    ax.axhline(tolerance, color="k", lw=0.8, label=f"tolerance {tolerance:g}")
    ax.set_xlabel("basis size K")
    ax.set_ylabel("held-out mismatch 1 - |Ph|/|h|")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def loss_figure(history: list[dict]):
    """Training and validation loss and the learning rate against epoch (save at dpi 120)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if history:
        ep = [r["epoch"] for r in history]
        ax.plot(ep, [r["train_loss"] for r in history], label="train")
        ax.plot(ep, [r["validation_loss"] for r in history], label="validation")
        ax2 = ax.twinx()
        ax2.semilogy(ep, [r["learning_rate"] for r in history], color="0.6", ls=":", label="learning rate")
        ax2.set_ylabel("learning rate")
        ax.legend(loc="upper right")
    else:
        ax.text(0.5, 0.5, "no epochs trained (training.epochs = 0)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (negative log density, standardised parameters)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
