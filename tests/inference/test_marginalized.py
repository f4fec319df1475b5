"""Importance sampling with the phase- and time-marginalised likelihood (``model.marginalized``): the
marginal against a brute-force integral of the full likelihood, the reconstruction against the
conditional posterior, and a tiny network that leaves phase and time out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp

from gwnpe.gw.domain import build_domain
from gwnpe.gw.likelihood import build_likelihood, log_likelihood_ratios
from gwnpe.gw.priors import fixed_parameters, load_priors
from gwnpe.inference.importance_sampling import chunk_log_likelihood, chunk_reconstruct
from tests.conftest import bilby_curve_psd

TRUTH = {"chirp_mass": 28.0, "mass_ratio": 0.8, "luminosity_distance": 1800.0, "theta_jn": 0.6, "ra": 1.3,
         "dec": -0.4, "psi": 0.7, "phase": 1.1, "geocent_time": 0.0123}


@pytest.fixture(scope="module")
def signal_event(tiny_config):
    """Noise-free tiny-config strain of TRUTH (phase origin: the segment start) and the spec of its likelihood."""
    from gwnpe.gw.likelihood import waveform_generator

    cfg = tiny_config
    dom = build_domain(cfg)
    trigger = cfg["trigger_time"]
    start = trigger - (cfg["domain"]["duration"] - cfg["domain"]["post_trigger_duration"])
    priors = load_priors(cfg["priors"])
    fixed = fixed_parameters(priors)
    psds = {ifo: bilby_curve_psd(dom.frequencies) for ifo in cfg["detectors"]}
    zeros = {ifo: np.zeros(len(dom), complex) for ifo in cfg["detectors"]}
    like = build_likelihood(dom, zeros, psds, start, "IMRPhenomD", 20.0)
    wfg = waveform_generator(dom, "IMRPhenomD", 20.0, start)
    params = {**fixed, **TRUTH, "geocent_time": trigger + TRUTH["geocent_time"]}
    pol = wfg.frequency_domain_strain(params)
    k0, k1 = dom.index_range
    strain = {ifo.name: ifo.get_detector_response(pol, params)[k0:k1] for ifo in like.interferometers}
    spec = {"domain": (dom.f_min, dom.f_max, dom.duration, 16384.0), "strain": strain, "psds": psds,
            "start_time": start, "approximant": "IMRPhenomD", "reference_frequency": 20.0, "fixed": fixed,
            "marginalization": ["phase", "time"], "prior_text": Path(cfg["priors"]).read_text(), "trigger_time": trigger}
    return dom, strain, psds, start, trigger, priors, spec


def test_marginal_likelihood_equals_the_integral_of_the_full_one(signal_event):
    """log of the integral over phase and geocent_time of L * prior, by brute force on a fine grid around the
    peak (the rest of the +-0.1 s prior adds nothing at this SNR), against bilby's marginalised likelihood
    on the fine time grid: the same within 0.03 (grid error plus bilby's antenna patterns held at the
    segment start, 2 s from the merger)."""
    dom, strain, psds, start, trigger, priors, spec = signal_event
    full = build_likelihood(dom, strain, psds, start, "IMRPhenomD", 20.0)
    rest = {k: v for k, v in TRUTH.items() if k not in ("phase", "geocent_time")}
    for shift in ({}, {"chirp_mass": 28.05, "ra": 1.32}):  # at the truth and off it
        point = {**rest, **shift}
        snr2 = 2 * log_likelihood_ratios(full, {**{k: np.array([v]) for k, v in point.items()},
                                                "phase": np.array([TRUTH["phase"]]),
                                                "geocent_time": np.array([trigger + TRUTH["geocent_time"]])},
                                         spec["fixed"])[0]
        assert 100 < snr2 < 400  # a well-resolved peak that these grids resolve
        # grids that resolve the peak: sigma_t ~ 0.1 ms, sigma_phase ~ 1 / (2 SNR) ~ 0.03 rad
        dt, nph = 4e-5, 256
        times = trigger + TRUTH["geocent_time"] + np.arange(-0.0008, 0.0008, dt)
        phases = np.arange(nph) * 2 * np.pi / nph
        tt, pp = np.meshgrid(times, phases, indexing="ij")
        grid = {**{k: np.full(tt.size, v) for k, v in point.items()}, "geocent_time": tt.ravel(), "phase": pp.ravel()}
        log_l = log_likelihood_ratios(full, grid, spec["fixed"])
        prior_density = priors["geocent_time"].prob(TRUTH["geocent_time"]) * priors["phase"].prob(1.0)
        brute = logsumexp(log_l) + np.log(dt * 2 * np.pi / nph * prior_density)
        marginal = chunk_log_likelihood(spec, {k: np.array([v]) for k, v in point.items()})[0]
        assert abs(marginal - brute) < 0.03, (shift, marginal, brute)


def test_reconstruction_draws_the_conditional_posterior_of_phase_and_time(signal_event):
    """Reconstructed geocent_time and phase of one point: deterministic per seed, and their mean and spread
    match the conditional posterior computed on a grid of the full likelihood."""
    dom, strain, psds, start, trigger, priors, spec = signal_event
    point = {k: np.full(400, v) for k, v in TRUTH.items() if k not in ("phase", "geocent_time")}
    a = chunk_reconstruct(spec, point, seed=3)
    b = chunk_reconstruct(spec, point, seed=3)
    np.testing.assert_array_equal(a["geocent_time"], b["geocent_time"])
    full = build_likelihood(dom, strain, psds, start, "IMRPhenomD", 20.0)
    # the time posterior marginalised over phase (bilby draws time first, then phase given time)
    times = trigger + TRUTH["geocent_time"] + np.arange(-0.0012, 0.0012, 2e-5)
    phases = np.arange(128) * 2 * np.pi / 128
    tt, pp = np.meshgrid(times, phases, indexing="ij")
    grid = {**{k: np.full(tt.size, v[0]) for k, v in point.items()}, "geocent_time": tt.ravel(), "phase": pp.ravel()}
    log_l = log_likelihood_ratios(full, grid, spec["fixed"]).reshape(tt.shape)
    w = np.exp(logsumexp(log_l, axis=1) - logsumexp(log_l))
    mean, sd = np.sum(w * times), np.sqrt(np.sum(w * (times - np.sum(w * times)) ** 2))
    t = a["geocent_time"]
    assert abs(t.mean() - mean) < 4 * sd / np.sqrt(len(t)) + 1e-5
    assert 0.8 < t.std() / sd < 1.25
    assert sd < 5e-4  # the likelihood resolves the time to a fraction of a millisecond
    # phase: (2,2)-only, so the posterior has modes at phase and phase + pi; fold onto [0, pi)
    folded = np.mod(a["phase"] - TRUTH["phase"] + np.pi / 2, np.pi) - np.pi / 2
    assert abs(np.mean(folded)) < 0.1 and np.std(folded) < 0.5


@pytest.fixture(scope="module")
def marginalized_model(tiny_products, tmp_path_factory):
    import copy

    from tests.conftest import train_model

    cfg = copy.deepcopy(tiny_products["config"])
    cfg["model"]["marginalized"] = ["phase", "time"]
    cfg["training"]["epochs"] = 2
    out = tmp_path_factory.mktemp("marginalized_model")
    train_model(cfg, out, training_set=tiny_products["training_set"], basis=tiny_products["basis"],
                psds=tiny_products["psds"])
    return out / "model.pt", cfg


def test_a_marginalised_model_samples_its_network_parameters_and_is_completes_them(marginalized_model):
    """The network leaves out phase and geocent_time; importance sampling weights with the marginal
    likelihood and returns draws of both for every sample, inside the prior; serial and dask agree."""
    from gwnpe.inference.importance_sampling import importance_sample
    from gwnpe.inference.sampling import sample_posterior
    from gwnpe.products.model import load_model
    from gwnpe.stages.cluster import dask_client
    from tests.conftest import noise_event

    path, cfg = marginalized_model
    model = load_model(path)
    assert "phase" not in model.parameter_names and "geocent_time" not in model.parameter_names
    assert model.settings["marginalized"] == ["phase", "time"]
    strain, psds = noise_event(model, seed=4)
    start = cfg["trigger_time"] - 2.0
    post = sample_posterior(model, strain, psds, 120, start_time=start, seed=1)
    assert "geocent_time" not in post["samples"]
    args = (model, strain, psds, start, post["samples"], post["log_q"], 120 / post["acceptance"], "IMRPhenomD", 20.0)
    serial = importance_sample(*args, seed=9)
    rec = serial["reconstructed"]
    assert set(rec) == {"phase", "geocent_time"} and len(rec["phase"]) == 120
    rel = rec["geocent_time"] - cfg["trigger_time"]
    assert np.all(np.abs(rel) <= 0.1) and np.all((rec["phase"] >= 0) & (rec["phase"] <= 2 * np.pi))
    assert np.isfinite(serial["log_evidence"])
    with dask_client({"cluster": "local", "n_workers": 2}, 2) as client:
        parallel = importance_sample(*args, client=client, chunk_size=50, seed=9)
    np.testing.assert_array_equal(parallel["weights"], serial["weights"])
    np.testing.assert_array_equal(parallel["reconstructed"]["geocent_time"], rec["geocent_time"])


def test_model_marginalized_is_checked_before_any_job(config):
    from gwnpe.errors import ConfigError
    from gwnpe.stages.workflow import check_marginalization

    config["model"]["marginalized"] = ["time"]
    config["model"]["gnpe"]["enabled"] = True
    with pytest.raises(ConfigError, match="model.gnpe.enabled"):
        check_marginalization(config)
    config["model"]["gnpe"]["enabled"] = False
    config["model"]["marginalized"] = ["phase"]
    config["waveform"]["approximant"] = "IMRPhenomPv2"
    with pytest.raises(ConfigError, match="model.marginalized includes 'phase'"):
        check_marginalization(config)
