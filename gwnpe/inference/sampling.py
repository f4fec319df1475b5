"""Draw posterior samples for detector strain with a trained NPE model.

Strain enters as frequency-domain arrays on the model's band (phase origin at the
segment start, as an FFT of the segment gives) or as time-domain files; PSDs as
gwnpe PSD files or arrays. Samples outside the prior support are rejected and
redrawn. :func:`gwnpe.products.results.save_result` writes the samples as a bilby Result with
parameters in physical units, ``geocent_time`` in GPS seconds, derived masses, and timing
in ``meta_data``.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from ..errors import InferenceError, InjectionError, StrainError
from ..gw.domain import FrequencyDomain, analysis_segment, to_trigger_origin, tukey_window, window_factor
from ..gw.noise import whiten
from ..gw.priors import load_priors, uniform_over_the_sky_circle
from ..gw.strain_io import read_strain
from .frame import ra_offset, reference_time  # noqa: F401  (re-exported: the frame of a model view)

logger = logging.getLogger(__name__)


def model_domain(model) -> FrequencyDomain:
    d = model.settings["domain"]
    return FrequencyDomain(float(d["f_min"]), float(d["f_max"]), float(d["duration"]), float(d["sampling_frequency"]))


def model_priors(model):
    """bilby priors the model was trained with (``geocent_time`` relative to the trigger); parsed once per model,
    with the same restricted reader as prior files (nothing stored in a model file is executed)."""
    cached = getattr(model, "_gwnpe_priors", None)
    if cached is None:
        model._gwnpe_priors = cached = load_priors("<the prior stored in the model file>", text=model.settings["prior_file"])
    return cached


def at_gps_time(model, gps_time: float):
    """The model, viewed for an event at ``gps_time`` instead of the time it was trained at.

    The network was trained with detector responses at its ``trigger_time`` (the reference). Responses
    depend on the sky position only through ``ra - GMST`` (:func:`gwnpe.gw.detectors.sidereal_offset`),
    so the network's posterior for data at ``gps_time`` is exact after rotating every right ascension
    by ``GMST(gps_time) - GMST(reference)``: a shift with unit Jacobian, so the flow's density (and
    importance weights) carry over unchanged, provided the prior on ``ra`` is uniform over the circle
    (otherwise the rotated prior differs from the trained one, and this is refused).

    Returns a shallow view sharing the network's weights, whose ``settings`` hold ``trigger_time =
    gps_time`` (the segment, phase origin and GPS ``geocent_time`` of the event), ``reference_time`` (the
    frame the network, GNPE and refinement simulate in) and ``ra_offset``. ``gwnpe sample --gps-time``.
    """
    import copy

    from ..gw.detectors import sidereal_offset

    ref = reference_time(model)
    gps_time = float(gps_time)
    if gps_time == float(model.settings["trigger_time"]):
        return model
    priors = model_priors(model)
    ra = priors.get("ra")
    if not ("ra" in model.parameter_names and uniform_over_the_sky_circle(priors)):
        raise InferenceError(
            f"the model was trained at GPS {ref} with the prior ra = {ra!r}; it can serve an event at another time "
            f"(GPS {gps_time}) only when right ascension is sampled from Uniform(0, 2 pi): the sky it learned is then "
            "rotated by the sidereal-time difference exactly. Train a model with that ra prior, or at the event's "
            "time (trigger_time in the config)."
        )
    view = copy.copy(model)
    view.settings = {**model.settings, "trigger_time": gps_time, "reference_time": ref,
                     "ra_offset": sidereal_offset(ref, gps_time)}
    return view


def _check_inputs(model, strain: dict, psds: dict) -> None:
    ifos = model.settings["detectors"]
    n_bins = model.settings["n_bins"]
    for what, given in (("strain", strain), ("PSD", psds)):
        if sorted(given) != sorted(ifos):
            raise InferenceError(
                f"the model was trained for detectors {ifos}, but {what} was given for {sorted(given)}; "
                "give exactly the model's detectors."
            )
    for ifo in ifos:
        for what, arr in (("strain", strain[ifo]), ("PSD", psds[ifo])):
            arr = np.asarray(arr)
            if arr.shape != (n_bins,):
                raise InferenceError(
                    f"{what} of {ifo} has shape {arr.shape}, but the model's frequency grid has {n_bins} bins "
                    f"({model.settings['domain']['f_min']}-{model.settings['domain']['f_max']} Hz at "
                    f"1/{model.settings['domain']['duration']} Hz); the data are on another grid."
                )
            if not np.all(np.isfinite(arr)):
                raise InferenceError(
                    f"{what} of {ifo} has {np.sum(~np.isfinite(arr))} non-finite (NaN/inf) bins: the data have a gap or "
                    "are flagged there; choose a segment without gaps (another trigger time) or gate/inpaint the data "
                    "before the FFT."
                )
        if np.any(np.asarray(psds[ifo]) <= 0):
            raise InferenceError(f"PSD of {ifo} has zero or negative bins inside the band.")


def whitened_strain(model, strain: dict, psds: dict, start_time: float | None) -> np.ndarray:
    """(n_det, n_bins) whitened strain with its phase origin moved to the trigger time."""
    _check_inputs(model, strain, psds)
    dom = model_domain(model)
    out = []
    for ifo in model.settings["detectors"]:
        s = np.asarray(strain[ifo], dtype=complex)
        if start_time is not None:
            s = to_trigger_origin(s, dom.frequencies, model.settings["trigger_time"], start_time)
        out.append(whiten(s, np.sqrt(np.asarray(psds[ifo], float)), dom.delta_f))
    return np.stack(out)


@torch.no_grad()
def sample_whitened(model, d: np.ndarray | torch.Tensor, n: int, seed: int | None = None, max_rounds: int = 20,
                    batch_events: int = 16, device: str | torch.device = "cpu", return_acceptance: bool = False,
                    asd=None):
    """n in-prior samples for each of E events of whitened strain ``d`` (E, n_det, n_bins).

    ``asd`` (E or 1, n_det, n_bins, or (n_det, n_bins) for all events): the ASDs ``d`` was whitened with,
    given to a noise-conditioned network (None: the ASDs it was trained with, ``model.extra["asds"]``);
    other networks ignore it.

    Returns
    -------
    theta : (E, n, D) ndarray in physical units (``geocent_time`` relative to the trigger)
    log_q : (E, n) ndarray, the flow density of each sample
    acceptance : (E,) ndarray, only with ``return_acceptance``
        Fraction of the flow's draws that fell inside the prior (normalises the truncated
        proposal; importance-sampling evidences need it).
    """
    priors = model_priors(model)
    names = model.parameter_names
    d = torch.as_tensor(np.asarray(d) if not isinstance(d, torch.Tensor) else d)
    if d.ndim == 2:
        d = d[None]
    if asd is not None:
        asd = torch.as_tensor(np.asarray(asd, float), dtype=torch.float32)
        asd = (asd[None] if asd.ndim == 2 else asd).expand(d.shape[0], -1, -1)
    if model.gnpe is not None:
        outs = [sample_gnpe(model, d[e], n, seed=None if seed is None else seed + e, device=device,
                            asd=None if asd is None else asd[e])
                for e in range(d.shape[0])]
        theta, logq, acc = (np.stack([o[k] for o in outs]) for k in ("theta", "log_q", "acceptance"))
        return (theta, logq, acc) if return_acceptance else (theta, logq)
    d = d.to(device, torch.complex64)
    model = model.to(device).eval()
    if seed is not None:
        torch.manual_seed(seed)
    E = d.shape[0]
    theta_out = np.empty((E, n, len(names)))
    logq_out = np.empty((E, n))
    acc_out = np.empty(E)
    for e0 in range(0, E, batch_events):
        de = d[e0 : e0 + batch_events]
        ae = None if asd is None else asd[e0 : e0 + batch_events].to(device)
        have = [[] for _ in range(len(de))]
        counts = np.zeros(len(de), int)
        drawn = np.zeros(len(de), int)
        for _ in range(max_rounds):
            need = n - counts.min()
            if need <= 0:
                break
            th, lq = model.sample_and_log_prob(de, int(need * 1.1) + 16, asd=ae)
            th, lq = th.double().cpu().numpy(), lq.double().cpu().numpy()
            for j in range(len(de)):
                if counts[j] >= n:
                    continue
                ok = np.isfinite(priors.ln_prob({k: th[j, :, i] for i, k in enumerate(names)}, axis=0))
                have[j].append((th[j][ok], lq[j][ok]))
                counts[j] += ok.sum()
                drawn[j] += ok.size
        if counts.min() < n:
            raise InferenceError(
                f"fewer than {n} of the flow's samples fell inside the prior after {max_rounds} rounds "
                f"(min {counts.min()}); the data are probably far from what the model was trained for."
            )
        for j in range(len(de)):
            theta_out[e0 + j] = np.concatenate([h[0] for h in have[j]])[:n]
            logq_out[e0 + j] = np.concatenate([h[1] for h in have[j]])[:n]
            acc_out[e0 + j] = counts[j] / drawn[j]
    if return_acceptance:
        return theta_out, logq_out, acc_out
    return theta_out, logq_out


def sample_posterior(model, strain: dict, psds: dict, n: int, start_time: float | None = None,
                     seed: int | None = None, device="cpu") -> dict:
    """Posterior samples for one event.

    Parameters
    ----------
    model : NPEModel
    strain : dict ifo -> (n_bins,) complex
        Frequency-domain strain [1/Hz] on the model's band.
    psds : dict ifo -> (n_bins,) float
        One-sided PSDs [1/Hz] on the same bins.
    n : int
        Number of samples.
    start_time : float, optional
        GPS time [s] that the strain's phase refers to (the segment start for an FFT of the
        segment); None when it already refers to the trigger time.

    Returns
    -------
    dict with ``samples`` (dict of arrays incl. derived masses, ``geocent_time`` in GPS s),
    ``log_q``, ``acceptance`` (fraction of flow draws inside the prior) and ``sampling_time`` [s].
    """
    t0 = time.perf_counter()
    d = whitened_strain(model, strain, psds, start_time)
    asd = whitening_asds(model, psds)
    if model.gnpe is not None:
        out = sample_gnpe(model, d, n, seed=seed, device=device, asd=asd)
        return {"samples": to_physical(model, out["theta"]), "log_q": out["log_q"], "acceptance": out["acceptance"],
                "sampling_time": time.perf_counter() - t0, "gnpe": out["gnpe"]}
    theta, logq, acc = sample_whitened(model, d, n, seed=seed, device=device, return_acceptance=True, asd=asd)
    samples = to_physical(model, theta[0])
    return {"samples": samples, "log_q": logq[0], "acceptance": float(acc[0]), "sampling_time": time.perf_counter() - t0}


def whitening_asds(model, psds: dict) -> np.ndarray:
    """(n_det, n_bins) ASDs of the PSDs the strain was whitened with, in the model's detector order
    (what a noise-conditioned network is given beside the whitened strain)."""
    return np.sqrt(np.stack([np.asarray(psds[ifo], float) for ifo in model.settings["detectors"]]))


def sample_gnpe(model, d, n: int, seed: int | None = None, device="cpu", iterations: int | None = None,
                asd=None) -> dict:
    """n samples of one event of whitened strain ``d`` (n_det, n_bins) with a GNPE model: Gibbs sampling,
    then density recovery (:mod:`gwnpe.inference.gnpe`). Returns ``theta`` (n, D, ``geocent_time``
    relative to the trigger), ``log_q``, ``acceptance`` and the ``gnpe`` diagnostics."""
    from .gnpe import GNPESampler

    iterations = iterations if iterations is not None else getattr(model, "gnpe_iterations", None)
    out = GNPESampler(model, d, model_domain(model).frequencies, device=device, asd=asd).sample(n, model_priors(model), iterations=iterations,
                                                      seed=0 if seed is None else int(seed))
    logger.info("GNPE: %d Gibbs iterations over %d chains (mean arrival time moving %.3f sigma per iteration at "
                "the end); density recovery kept %.1f%% of its draws", out["gnpe"]["iterations"], out["gnpe"]["chains"],
                out["gnpe"]["max_mean_shift"], 100 * out["gnpe"]["kept_fraction"])
    return out


def to_physical(model, theta: np.ndarray) -> dict:
    """Samples (n, D) in the network's frame -> dict with GPS ``geocent_time``, the event's right
    ascension (:func:`at_gps_time`) and derived mass parameters."""
    from bilby.gw.conversion import generate_mass_parameters

    samples = {k: theta[:, i] for i, k in enumerate(model.parameter_names)}
    if "geocent_time" in samples:
        samples["geocent_time"] = samples["geocent_time"] + model.settings["trigger_time"]
    if "ra" in samples and ra_offset(model):
        samples["ra"] = np.mod(samples["ra"] + ra_offset(model), 2 * np.pi)  # the event's sky (at_gps_time)
    return generate_mass_parameters(dict(samples))


#: Roll-off [s] of the window applied to time-domain data for models that record none (made before
#: the window convention; the value gwnpe used then, as bilby's default).
LEGACY_ROLL_OFF = 0.2


def strain_from_time_domain(model, paths: dict, channels: dict | None = None):
    """FD strain on the model's band from time-domain files of the analysed segment.

    The segment (bilby convention: ``duration`` s ending ``post_trigger_duration`` s after the
    trigger) is Tukey-windowed with the model's ``domain.roll_off`` s at each side (as in training,
    see :mod:`gwnpe.gw.domain`) and FFT'd. Returns (strain dict, start_time, window_factor of the
    window applied); :func:`analysis_psds` turns PSDs into those of the windowed data.
    """
    dom = model_domain(model)
    dset = model.settings["domain"]
    roll_off = dset.get("roll_off")
    if roll_off is None:
        roll_off = LEGACY_ROLL_OFF
    start, end = analysis_segment(model.settings["trigger_time"], dset["duration"], dset["post_trigger_duration"])
    out, k0, k1 = {}, *dom.index_range
    n = int(round(dom.duration * dom.sampling_frequency))
    window = tukey_window(n, dom.duration, roll_off)
    for ifo, p in paths.items():
        t0, dt, data = read_strain(p, ifo, start, end, channel=(channels or {}).get(ifo))
        if abs(1.0 / dt - dom.sampling_frequency) > 1e-6:
            raise InferenceError(
                f"strain file '{p}' of {ifo} is sampled at {1 / dt:g} Hz, the model at {dom.sampling_frequency:g} Hz; "
                "resample the data first."
            )
        if len(data) != n:
            raise InferenceError(f"strain file '{p}' of {ifo} gives {len(data)} samples of the segment, expected {n}.")
        out[ifo] = (np.fft.rfft(data * window) * dt)[k0:k1]
    return out, start, float(np.mean(window**2))


def analysis_psds(model, welch_psds: dict | None = None, data_window_factor: float | None = None) -> dict:
    """PSDs [1/Hz] on the model's band of the data given to the model: the analysis PSDs.

    Parameters
    ----------
    welch_psds : dict, optional
        Detector PSDs (e.g. Welch estimates, as the psd stage writes them) on the model's band;
        default: the analysis PSDs the model was trained with (``model.extra["asds"]`` squared).
    data_window_factor : float, optional
        Window factor of the window applied to the data (:func:`strain_from_time_domain`); default:
        the model's, as for frequency-domain strain made with gwnpe's convention (the injections).

    Welch PSDs are scaled by the data's window factor; the model's own PSDs already hold the model's
    window factor and are rescaled only where the data's differs (models made before the convention).
    """
    w_model = window_factor(model.settings["domain"])
    w_data = w_model if data_window_factor is None else float(data_window_factor)
    if welch_psds:
        return {ifo: np.asarray(p, float) * w_data for ifo, p in welch_psds.items()}
    if not np.isclose(w_data, w_model, rtol=1e-9):
        logger.warning("the model records no domain.roll_off (it predates gwnpe's window convention): its training "
                       "noise was not scaled by the window factor, so windowed data reach it %.1f%% louder than "
                       "its training signals; retrain it for unbiased distances", 100 * (w_model / w_data) ** 0.5 - 100)
    return {ifo: np.asarray(a, float) ** 2 * (w_data / w_model)
            for ifo, a in zip(model.settings["detectors"], model.extra["asds"])}


def psds_from_time_domain(model, paths: dict, channels: dict | None = None, psd_duration: float | None = None) -> dict:
    """Welch PSDs on the model's band from the ``psd_duration`` s of each file that end where the
    event's segment starts (as the psd stage does for ``psd.source: files``: segments of
    ``domain.duration``, 50% overlap, Hann window, median average). Default duration: 32 segments,
    as bilby_pipe. Detector PSDs, before the window factor (:func:`analysis_psds` applies it)."""
    from ..gw.noise import event_welch_psd

    dset = model.settings["domain"]
    seg = float(dset["duration"])
    duration = float(psd_duration) if psd_duration else 32.0 * seg
    if duration < seg:
        raise InferenceError(f"the PSD duration {duration:g} s (--psd-duration, events.psd_duration) is shorter than "
                             f"one Welch segment of {seg:g} s (the model's domain.duration); give several segments "
                             "(bilby_pipe uses 32).")
    start, _ = analysis_segment(model.settings["trigger_time"], dset["duration"], dset["post_trigger_duration"])
    dom = model_domain(model)
    out = {}
    for ifo in model.settings["detectors"]:
        try:
            _, dt, data = read_strain(paths[ifo], ifo, start - duration, start, channel=(channels or {}).get(ifo))
        except StrainError as exc:  # say what the window was for
            raise InferenceError(f"{exc} (the {duration:g} s before the event's segment, for its PSD: give longer "
                                 "files, a shorter --psd-duration / events.psd_duration, or --psd)") from None
        if 1.0 / dt < dom.sampling_frequency * (1 - 1e-9):
            raise InferenceError(f"strain file '{paths[ifo]}' of {ifo} is sampled at {1 / dt:g} Hz, below the model's "
                                 f"{dom.sampling_frequency:g} Hz; its PSD cannot cover the band.")
        out[ifo] = event_welch_psd(data, dt, dom, source=f"the Welch PSD of {ifo} from '{paths[ifo]}'")
    return out


#: Ratio of an event's ASD to the training ASD, in any octave of the band, beyond which the event is
#: reported as outside what a fixed-ASD network was trained on.
ASD_TOLERANCE = 1.2


def asd_outside_training(model, psds: dict, tolerance: float = ASD_TOLERANCE) -> list[dict]:
    """Octave bands where an event's analysis PSDs differ from those the network was trained with.

    For a noise-conditioned network, "trained with" is the range its ASD dataset spans (per bin, the
    0.5% and 99.5% quantiles of its training ASDs, ``model.extra["asd_range"]``), and the ratio is to the
    nearest end of that range.

    A network trained on one noise spectrum (``model.extra["asds"]``) has learned posteriors for data
    whitened by it: where the event's ASD differs, the noise it sees is louder or quieter than any in
    training and its posterior is miscalibrated there (importance sampling with the event's PSD
    corrects the weights, at a lower efficiency). Returns one dict per (detector, octave) whose median
    ratio ASD_event / ASD_training lies outside ``[1/tolerance, tolerance]``, and logs a warning.
    """
    f = model_domain(model).frequencies
    ifos = model.settings["detectors"]
    trained = {ifo: (np.asarray(a, float),) * 2 for ifo, a in zip(ifos, model.extra["asds"])}
    span = model.extra.get("asd_range")
    if model.noise_conditioned and span is not None:
        # a noise-conditioned network was trained over a set of ASDs: the range it spans (0.5-99.5% per bin)
        trained = {ifo: (np.asarray(span[0][j], float), np.asarray(span[1][j], float)) for j, ifo in enumerate(ifos)}
    edges = [f[0]]
    while edges[-1] * 2 < f[-1]:
        edges.append(edges[-1] * 2)
    edges.append(f[-1] + 1e-9)
    out = []
    for ifo, psd in psds.items():
        asd = np.sqrt(np.asarray(psd, float))
        ratio = asd / np.clip(asd, *trained[ifo])  # to the nearest ASD of the training range per bin
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (f >= lo) & (f < hi)
            r = float(np.median(ratio[sel])) if sel.any() else 1.0
            if not 1.0 / tolerance <= r <= tolerance:
                out.append({"detector": ifo, "f_low": float(lo), "f_high": float(min(hi, f[-1])), "ratio": r})
    for o in out:
        logger.warning("%s: the event's ASD is %.2fx the ASD the network was trained with at %.0f-%.0f Hz: outside "
                       "what it was trained on, so its posterior is miscalibrated there (importance sampling "
                       "reweights it; a noise-conditioned model would not need to)", o["detector"], o["ratio"],
                       o["f_low"], o["f_high"])
    return out


def check_model_parameters(model, parameters: dict, source) -> None:
    """Refuse injections that lack a parameter the model infers (made with another prior)."""
    missing = [k for k in model.parameter_names if k not in parameters]
    if missing:
        raise InjectionError(f"injections in '{source}' lack the model's parameters {missing}: "
                             "they were made with another prior; rerun the injections stage.")
