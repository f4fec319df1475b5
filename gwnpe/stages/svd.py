"""The svd stage: a reduced basis of whitened, time-shifted bank waveforms, validated on held-out ones."""

from __future__ import annotations

import logging

import numpy as np

from ..products.bank import load_bank
from ..products.basis import write_basis
from ..products.common import make_provenance, save_figure
from ..products.psd import psd_on_domain
from ..diagnostics.training_plots import mismatch_figure
from ..errors import BasisError
from ..gw.domain import build_domain
from ..gw.noise import whiten
from ..gw.priors import load_priors
from ..gw.svd import ReducedBasis, default_time_shift, projection_mismatch, randomized_svd, time_shift
from ..seeding import stage_rng
from .settings import stage_settings

logger = logging.getLogger(__name__)


def run_svd_stage(settings: dict, *, bank_path, psd_paths: dict, out_path, plot_path=None, threads: int = 1) -> dict:
    """Build, validate and write the reduced basis (``basis.h5``) and its mismatch plot.

    The basis is fitted to bank waveforms (h+ and hx) whitened by the reference ASD
    (square root of the detectors' mean PSD) and delayed by random times within
    ``svd.time_shift``, so it spans the arrival-time offsets the network sees.
    Held-out waveforms, whitened by the reference and by each detector's ASD,
    give the mismatch statistics; the stage fails if their maximum exceeds
    ``svd.tolerance``.
    """
    import torch

    torch.set_num_threads(max(1, int(threads)))
    cfg = settings["svd"]
    domain = build_domain(settings)
    bank = load_bank(bank_path)
    freqs = domain.frequencies
    if bank.h_plus.shape[1] != len(freqs) or not np.allclose(bank.frequencies, freqs):
        raise BasisError(f"bank '{bank_path}' is on a different frequency grid than the domain; rerun the bank stage.")
    if cfg["size"] > len(freqs):
        raise BasisError(f"svd.size = {cfg['size']} exceeds the {len(freqs)} frequency bins of the band; lower svd.size.")
    n = bank.h_plus.shape[0]
    n_val = cfg["validation_size"]
    if n - n_val < cfg["size"]:
        raise BasisError(
            f"bank has {n} waveforms: too few for svd.size = {cfg['size']} plus svd.validation_size = {n_val}; "
            "raise bank.size or lower svd.size."
        )
    missing = [ifo for ifo in settings["detectors"] if ifo not in psd_paths]
    if missing:
        raise BasisError(
            f"no PSD file given for {', '.join(missing)} (detectors {list(settings['detectors'])}); run the psd "
            "stage for every detector and pass all their files."
        )
    psds = {ifo: psd_on_domain(psd_paths[ifo], domain) for ifo in settings["detectors"]}
    asd_ref = np.sqrt(np.mean([psds[ifo] for ifo in settings["detectors"]], axis=0))
    priors = load_priors(settings["priors"])
    tau = cfg["time_shift"] if cfg["time_shift"] is not None else default_time_shift(priors)
    rng = stage_rng(settings["seed"], "svd")
    dt = rng.uniform(-tau, tau, size=n)

    train = slice(0, n - n_val)
    rows = np.concatenate(
        [whiten(time_shift(getattr(bank, pol)[train], freqs, dt[train]), asd_ref, domain.delta_f) for pol in ("h_plus", "h_cross")]
    )
    del_f = domain.delta_f
    logger.info("svd: randomized SVD of %s rows x %d bins to %d elements (time shifts +-%.4f s)", rows.shape[0], rows.shape[1], cfg["size"], tau)
    V, s = randomized_svd(rows, cfg["size"], cfg["oversampling"], cfg["n_iter"], int(rng.integers(2**31)))
    del rows

    # The tolerance applies to what the training set stores: reference-whitened waveforms. Whitening
    # by a detector's own (estimated, noisy) ASD is applied after exact decompression at training
    # time; its projection mismatch (relevant only to the basis-initialised first network layer)
    # is recorded for information.
    val = slice(n - n_val, n)
    whitenings = {"reference": asd_ref, **{ifo: np.sqrt(p) for ifo, p in psds.items()}}
    mm_by = {}
    for name, asd in whitenings.items():
        rows_val = np.concatenate([whiten(time_shift(getattr(bank, pol)[val], freqs, dt[val]), asd, del_f) for pol in ("h_plus", "h_cross")])
        mm_by[name] = projection_mismatch(rows_val, V)
    mm_all = mm_by["reference"]
    mm = mm_all[:, -1]
    stats = {
        "mismatch_max": float(mm.max()),
        "mismatch_median": float(np.median(mm)),
        "mismatch_p99": float(np.percentile(mm, 99)),
        **{f"mismatch_max_{ifo}": float(m[:, -1].max()) for ifo, m in mm_by.items() if ifo != "reference"},
    }
    sizes = np.unique(np.geomspace(1, cfg["size"], num=min(40, cfg["size"])).astype(int))
    curve = {
        "basis_size": sizes,
        "max": mm_all[:, sizes - 1].max(axis=0),
        "p99": np.percentile(mm_all[:, sizes - 1], 99, axis=0),
        "median": np.median(mm_all[:, sizes - 1], axis=0),
        **{f"max_{ifo}": m[:, sizes - 1].max(axis=0) for ifo, m in mm_by.items() if ifo != "reference"},
    }
    logger.info("svd: held-out mismatch max %.3g, median %.3g, 99th percentile %.3g (tolerance %.3g); "
                "with each detector's own ASD: %s", stats["mismatch_max"], stats["mismatch_median"], stats["mismatch_p99"],
                cfg["tolerance"], {k: f"{v:.3g}" for k, v in stats.items() if k.startswith("mismatch_max_")})
    if plot_path is not None:
        save_figure(mismatch_figure(curve, cfg["tolerance"]), plot_path, dpi=120)
    if stats["mismatch_max"] > cfg["tolerance"]:
        worst = int(np.argmax(mm)) % n_val
        raise BasisError(
            f"held-out max mismatch {stats['mismatch_max']:.3g} exceeds svd.tolerance = {cfg['tolerance']:.3g} with "
            f"svd.size = {cfg['size']} (worst: bank waveform {n - n_val + worst}, "
            f"{ {k: float(v[n - n_val + worst]) for k, v in bank.parameters.items()} }). "
            "Raise svd.size (and bank.size), or loosen svd.tolerance."
        )
    prov = make_provenance(
        "svd", {**stage_settings(settings, "svd"), "time_shift_used": tau},
        inputs={"bank": bank_path, **{f"psd_{k}": v for k, v in psd_paths.items()}},
    )
    basis = ReducedBasis(V=V, asd_reference=asd_ref, frequencies=freqs, delta_f=del_f)
    attrs = {"time_shift": tau, "tolerance": cfg["tolerance"], **stats}
    write_basis(out_path, basis, s, curve, mm, attrs, prov)
    return stats
