"""The injections stage: parameters from the prior (or a file), strain = signal + coloured Gaussian noise.

Signals are made exactly as the network expects real data: LALSimulation
polarizations (bilby source functions) projected onto the detectors with the
same geometry as bilby, the time shift as a frequency-domain phase whose origin
is the segment start (as an FFT of the analysed segment gives), and noise drawn
from the run's estimated PSDs, which are the noise model the network was trained
for. Optimal and matched-filter SNRs are recorded per detector and for the network.

With ``injections.asd_source: held_out`` each injection's noise in each detector is coloured instead
by an ASD drawn from the held-out part of the ASD dataset (never seen by a noise-conditioned network
in training); its PSD is stored per injection and is the one it is whitened with.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..products.common import make_provenance
from ..products.injections import check_injections_in_prior, Injections, read_injection_file, write_injections
from ..products.psd import psd_on_domain
from ..errors import InjectionError, WaveformFailure
from ..gw.detectors import DetectorNetwork
from ..gw.domain import analysis_psd, build_domain, segment_start
from ..gw.noise import whiten
from ..gw.priors import EXTRINSIC, draw, fixed_parameters, intrinsic_keys, load_priors, sampled_keys
from ..gw.waveforms import build_waveform_generator, generate_from_prior, max_failures
from ..seeding import stage_rng
from .settings import stage_settings

logger = logging.getLogger(__name__)


def held_out_psds(path, settings: dict, dom, n: int, rng) -> tuple[dict, dict]:
    """Per detector (n, n_bins) analysis PSDs drawn (independently per injection and detector) from the
    held-out part of the ASD dataset at ``path``, and the drawn indices into the dataset."""
    from ..products.asd_dataset import read_asd_part

    held, first = read_asd_part(path, list(settings["detectors"]), dom.frequencies,
                                settings["model"]["noise_conditioning"]["held_out_fraction"], "held_out", InjectionError)
    psds, index = {}, {}
    for ifo, asds in held.items():
        drawn = rng.integers(0, len(asds), size=n)
        index[ifo] = first + drawn
        psds[ifo] = analysis_psd(asds[drawn] ** 2, settings["domain"])
    return psds, index


def run_injections_stage(settings: dict, *, psd_paths: dict, out_path, asd_dataset_path=None) -> dict:
    """Draw (or read) the injections, make their strain and SNRs, write ``injections.h5``
    (layout: :func:`gwnpe.products.injections.write_injections`); with ``injections.asd_source:
    held_out`` the noise of each injection comes from the held-out ASDs of ``asd_dataset_path``."""
    priors = load_priors(settings["priors"], approximant=settings["waveform"]["approximant"])
    names = sampled_keys(priors)
    keys_int = intrinsic_keys(priors)
    gen = build_waveform_generator(settings)
    dom = build_domain(settings)
    inj = settings["injections"]
    failures: list[dict] = []
    if inj["file"]:
        params = read_injection_file(inj["file"], names)
        check_injections_in_prior(priors, params, inj["file"])
        n = len(params[names[0]])
        fixed = {k: np.full(n, v) for k, v in fixed_parameters(priors).items()}
        lal = gen.to_lal({**fixed, **{k: params[k] for k in keys_int}})
        hp, hc = np.empty((n, len(dom)), complex), np.empty((n, len(dom)), complex)
        for i in range(n):
            try:
                hp[i], hc[i] = gen.polarizations({k: v[i] for k, v in lal.items()})
            except WaveformFailure as exc:
                raise InjectionError(f"injection {i} of '{inj['file']}' was refused by LAL: {exc}; parameters "
                                     f"{ {k: float(params[k][i]) for k in names} }") from None
    else:
        n = inj["count"]
        rng_int = stage_rng(settings["seed"], "injections", 0)
        rng_ext = stage_rng(settings["seed"], "injections", 1)
        allowed = max_failures(settings["waveform"]["max_failure_fraction"], n)
        intr, hp, hc, failures = generate_from_prior(gen, priors, keys_int, n, rng_int, allowed)
        ext_keys = [k for k in names if k in EXTRINSIC]
        params = {**intr, **draw(priors, ext_keys, n, rng_ext)}
    fixed = fixed_parameters(priors)
    full = {k: np.asarray(params[k], float) if k in params else np.full(n, fixed[k]) for k in EXTRINSIC}

    net = DetectorNetwork(list(settings["detectors"]), reference_time=float(settings["trigger_time"]), dtype=torch.float64)
    start = segment_start(settings["trigger_time"], settings["domain"])
    scale = gen.reference_distance / full["luminosity_distance"]
    signal = net.project(torch.from_numpy(hp * scale[:, None]), torch.from_numpy(hc * scale[:, None]),
                         torch.from_numpy(dom.frequencies), torch.from_numpy(full["ra"]), torch.from_numpy(full["dec"]),
                         torch.from_numpy(full["psi"]), torch.from_numpy(full["geocent_time"]),
                         geocent_shift=settings["trigger_time"] - start).numpy()  # (n, n_det, n_bins), origin = start
    rng_noise = stage_rng(settings["seed"], "injections", 2)
    strain, snr = {}, {}
    num, den = np.zeros(n), np.zeros(n)
    psds, asd_index = {}, None
    held_out = inj["asd_source"] == "held_out"
    if held_out:
        per_injection, asd_index = held_out_psds(asd_dataset_path, settings, dom, n,
                                                 stage_rng(settings["seed"], "injections", 3))
    for j, ifo in enumerate(settings["detectors"]):
        if held_out:
            psd = per_injection[ifo]  # (n, n_bins)
        else:
            psd = analysis_psd(psd_on_domain(psd_paths[ifo], dom), settings["domain"])  # as windowed data would have
        psds[ifo] = psd
        sigma = np.sqrt(psd / (4.0 * dom.delta_f))  # std of each real component of the FD noise
        noise = (rng_noise.standard_normal((n, len(dom))) + 1j * rng_noise.standard_normal((n, len(dom)))) * sigma
        strain[ifo] = signal[:, j] + noise
        hw = whiten(signal[:, j], np.sqrt(psd), dom.delta_f)
        dw = whiten(strain[ifo], np.sqrt(psd), dom.delta_f)
        hh = np.sum(np.abs(hw) ** 2, axis=1)
        dh = np.real(np.sum(np.conj(dw) * hw, axis=1))
        snr[f"optimal_{ifo}"] = np.sqrt(hh)
        snr[f"matched_filter_{ifo}"] = dh / np.sqrt(hh)
        num += dh
        den += hh
    snr["network_optimal"] = np.sqrt(den)
    snr["network_matched_filter"] = num / np.sqrt(den)
    logger.info("injections: %d, network optimal SNR median %.1f (5-95%%: %.1f-%.1f), %d LAL refusals redrawn",
                n, np.median(snr["network_optimal"]), *np.percentile(snr["network_optimal"], [5, 95]), len(failures))
    inputs = {f"psd_{k}": v for k, v in psd_paths.items()}
    if held_out:
        inputs["asd_dataset"] = asd_dataset_path
    prov = make_provenance(
        "injections", stage_settings(settings, "injections"), inputs=inputs,
        texts={"prior_file": Path(settings["priors"]).read_text()},
    )
    write_injections(out_path, Injections(
        parameters={k: np.asarray(params[k], float) for k in names}, frequencies=dom.frequencies,
        strain={ifo: strain[ifo] for ifo in settings["detectors"]}, psd={ifo: psds[ifo] for ifo in settings["detectors"]},
        snr=snr, start_time=start, trigger_time=float(settings["trigger_time"]), failures=failures,
        asd_index=asd_index,
    ), prov)
    return {"n": n, "network_optimal_snr_median": float(np.median(snr["network_optimal"]))}
