"""Injection campaigns: parameters from the prior (or a file), strain = signal + coloured Gaussian noise.

Signals are made exactly as the network expects real data: LALSimulation
polarizations (bilby source functions) projected onto the detectors with the
same geometry as bilby, the time shift as a frequency-domain phase whose origin
is the segment start (as an FFT of the analysed segment gives), and noise drawn
from the run's estimated PSDs, which are the noise model the network was trained
for. Optimal and matched-filter SNRs are recorded per detector and for the network.

Layout of ``injections.h5``: ``parameters/<name>`` (N,) with ``geocent_time``
relative to ``trigger_time`` (prior convention), ``frequencies`` (n_bins,) [Hz],
``strain/<ifo>`` (N, n_bins) complex128 [1/Hz], ``psd/<ifo>`` (n_bins,) [1/Hz],
``snr/optimal_<ifo>``, ``snr/matched_filter_<ifo>``, ``snr/network_optimal``,
``snr/network_matched_filter`` (N,), attributes ``start_time``, ``trigger_time`` (GPS s),
``failures`` (JSON) and the provenance.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from . import provenance
from .domain import build_domain
from .errors import GwnpeError
from .priors import EXTRINSIC, draw, fixed_parameters, intrinsic_keys, load_priors, sampled_keys
from .psd import psd_on_domain, whiten
from .seeding import stage_rng
from .waveforms import WaveformFailure, build_waveform_generator, generate_from_prior, max_failures

logger = logging.getLogger(__name__)


class InjectionError(GwnpeError):
    """An injection file or index is invalid."""


def injection_settings(config: dict) -> dict:
    from .config import config_subset

    return config_subset(config, "seed", "detectors", "trigger_time", "priors", "domain", "waveform", "injections")


def segment_start(settings: dict) -> float:
    d = settings["domain"]
    return settings["trigger_time"] + d["post_trigger_duration"] - d["duration"]


def read_injection_file(path, names: list[str]) -> dict[str, np.ndarray]:
    """Parameters from a CSV (header row) or JSON ({name: [values]}) file; every sampled parameter is required."""
    path = Path(path)
    if not path.is_file():
        raise InjectionError(f"injection file '{path}' does not exist (injections.file).")
    if path.suffix == ".json":
        raw = json.loads(path.read_text())
        table = {k: np.asarray(v, float) for k, v in raw.items()}
    else:
        arr = np.genfromtxt(path, delimiter=",", names=True, dtype=float)
        table = {k: np.atleast_1d(arr[k]) for k in arr.dtype.names}
    missing = [k for k in names if k not in table]
    if missing:
        raise InjectionError(f"injection file '{path}' has no column for {', '.join(missing)}; it needs {', '.join(names)}.")
    bad = [k for k in names if not np.all(np.isfinite(table[k]))]
    if bad:
        raise InjectionError(f"injection file '{path}' has non-finite values in {', '.join(bad)}.")
    return {k: table[k] for k in names}


def injection_count(settings: dict) -> int:
    """Number of injections: ``injections.count``, or the rows of ``injections.file``."""
    inj = settings["injections"]
    if inj["file"]:
        priors = load_priors(settings["priors"])
        return len(next(iter(read_injection_file(inj["file"], sampled_keys(priors)).values())))
    return inj["count"]


def run_injections_stage(settings: dict, psd_paths: dict, out_path) -> dict:
    """Draw (or read) the injections, make their strain and SNRs, write ``injections.h5``."""
    from .detectors import DetectorNetwork

    priors = load_priors(settings["priors"], approximant=settings["waveform"]["approximant"])
    names = sampled_keys(priors)
    keys_int = intrinsic_keys(priors)
    gen = build_waveform_generator(settings)
    dom = build_domain(settings)
    inj = settings["injections"]
    failures: list[dict] = []
    if inj["file"]:
        params = read_injection_file(inj["file"], names)
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
    start = segment_start(settings)
    scale = gen.reference_distance / full["luminosity_distance"]
    signal = net.project(torch.from_numpy(hp * scale[:, None]), torch.from_numpy(hc * scale[:, None]),
                         torch.from_numpy(dom.frequencies), torch.from_numpy(full["ra"]), torch.from_numpy(full["dec"]),
                         torch.from_numpy(full["psi"]), torch.from_numpy(full["geocent_time"]),
                         geocent_shift=settings["trigger_time"] - start).numpy()  # (n, n_det, n_bins), origin = start
    rng_noise = stage_rng(settings["seed"], "injections", 2)
    strain, snr = {}, {}
    num, den = np.zeros(n), np.zeros(n)
    psds = {}
    for j, ifo in enumerate(settings["detectors"]):
        psd = psd_on_domain(psd_paths[ifo], dom)
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
    prov = provenance.make_provenance(
        "injections", {**settings, "prior_file": Path(settings["priors"]).read_text()},
        inputs={f"psd_{k}": v for k, v in psd_paths.items()},
    )
    import h5py

    with provenance.atomic_output(out_path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            g = f.create_group("parameters", track_order=True)
            for k in names:
                g.create_dataset(k, data=np.asarray(params[k], float), track_times=False)
            f.create_dataset("frequencies", data=dom.frequencies, track_times=False)
            gs = f.create_group("strain", track_order=True)
            gp = f.create_group("psd", track_order=True)
            for ifo in settings["detectors"]:
                gs.create_dataset(ifo, data=strain[ifo], track_times=False)
                gp.create_dataset(ifo, data=psds[ifo], track_times=False)
            gsnr = f.create_group("snr", track_order=True)
            for k, v in snr.items():
                gsnr.create_dataset(k, data=v, track_times=False)
            f.attrs["start_time"] = start
            f.attrs["trigger_time"] = float(settings["trigger_time"])
            f.attrs["failures"] = json.dumps(failures)
            provenance.write_h5(f, prov)
    return {"n": n, "network_optimal_snr_median": float(np.median(snr["network_optimal"]))}


def load_injections(path) -> dict:
    """Read ``injections.h5``."""
    with provenance.open_stage_output(path, "injection file", "injections", InjectionError) as f:
        return {
            "parameters": {k: v[...] for k, v in f["parameters"].items()},
            "frequencies": f["frequencies"][...],
            "strain": {k: v[...] for k, v in f["strain"].items()},
            "psd": {k: v[...] for k, v in f["psd"].items()},
            "snr": {k: v[...] for k, v in f["snr"].items()},
            "start_time": float(f.attrs["start_time"]),
            "trigger_time": float(f.attrs["trigger_time"]),
        }


def check_model_parameters(model, parameters: dict, injections_path) -> None:
    """Refuse injections that lack a parameter the model infers (made with another prior)."""
    missing = [k for k in model.parameter_names if k not in parameters]
    if missing:
        raise InjectionError(f"injections in '{injections_path}' lack the model's parameters {missing}: "
                             "they were made with another prior; rerun the injections stage.")


def run_posteriors_stage(model_path, injections_path, out_paths: list, n_samples: int, seed: int, batch_events: int = 16,
                         threads: int = 1, device: str = "cpu") -> dict:
    """NPE posteriors of every injection, sampled in batches; one bilby Result file per injection."""
    import time

    from .inference.sampling import sample_whitened, save_result, to_physical, whitened_strain
    from .nn.model import load_model

    torch.set_num_threads(max(1, int(threads)))
    inj = load_injections(injections_path)
    n = len(next(iter(inj["parameters"].values())))
    if len(out_paths) != n:
        raise InjectionError(f"{len(out_paths)} posterior files requested for {n} injections in '{injections_path}'.")
    model = load_model(model_path, device=device)
    names = model.parameter_names
    check_model_parameters(model, inj["parameters"], injections_path)
    t0 = time.perf_counter()
    d = np.stack([whitened_strain(model, {k: v[i] for k, v in inj["strain"].items()}, inj["psd"], inj["start_time"])
                  for i in range(n)])
    t_prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    theta, logq = sample_whitened(model, d, n_samples, seed=seed, batch_events=batch_events, device=device)
    t_sample = time.perf_counter() - t0
    per_event = (t_prep + t_sample) / n
    logger.info("posteriors: %d injections x %d samples in %.1f s (%.3f s per event)", n, n_samples, t_prep + t_sample, per_event)
    for i, path in enumerate(out_paths):
        truth = {k: float(inj["parameters"][k][i]) for k in names}
        truth["geocent_time"] = truth.get("geocent_time", 0.0) + inj["trigger_time"]
        from bilby.gw.conversion import generate_mass_parameters

        truth = generate_mass_parameters(truth)
        save_result(path, model, to_physical(model, theta[i]), logq[i], per_event, label=f"injection_{i}",
                    injection_parameters={k: float(v) for k, v in truth.items()},
                    meta_data={"injection": i, "snr": {k: float(v[i]) for k, v in inj["snr"].items()},
                               "sampling_time_per_event": per_event, "batch_events": batch_events})
    return {"n": n, "seconds_per_event": per_event}
