"""Injection campaign and PP-test: SNRs, agreement with bilby's make_pp_plot, and a PP-test that can fail."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from gwnpe.diagnostics.pp import credible_levels, pp_test, run_pp_stage
from gwnpe.injections import InjectionError, injection_settings, load_injections, run_injections_stage, run_posteriors_stage


def _gaussian_results(tmp_path, n=60, shift=0.0, seed=0):
    """bilby Results whose posteriors are N(x_obs, 1) for truths x ~ N(x_obs, 1): calibrated when shift = 0."""
    import bilby
    import pandas as pd

    rng = np.random.default_rng(seed)
    paths = []
    priors = bilby.core.prior.PriorDict({"a": bilby.core.prior.Uniform(-10, 10, "a"), "b": bilby.core.prior.Uniform(-10, 10, "b")})
    for i in range(n):
        truth = {"a": rng.uniform(-3, 3), "b": rng.uniform(-3, 3)}
        obs = {k: v + rng.normal() for k, v in truth.items()}
        post = pd.DataFrame({k: obs[k] + shift + rng.normal(size=800) for k in truth})
        r = bilby.core.result.Result(label=f"r{i}", search_parameter_keys=["a", "b"], priors=priors, posterior=post,
                                     injection_parameters=truth)
        p = tmp_path / f"r{i}.hdf5"
        r.save_to_file(filename=str(p), extension="hdf5", overwrite=True)
        paths.append(p)
    return paths


def test_pvalues_agree_with_bilby_make_pp_plot(tmp_path):
    import bilby

    paths = _gaussian_results(tmp_path)
    ours = run_pp_stage(paths, tmp_path / "pp.json", tmp_path / "pp.png", tmp_path / "pp.csv")
    results = [bilby.core.result.read_in_result(str(p)) for p in paths]
    _, pvals = bilby.core.result.make_pp_plot(results, save=False, keys=["a", "b"])
    for name, p in zip(pvals.names, pvals.pvalues):
        assert ours["pvalues"][name] == pytest.approx(p, abs=1e-6)
    assert ours["combined_pvalue"] == pytest.approx(pvals.combined_pvalue, abs=1e-6)
    assert ours["n_injections"] == 60
    assert (tmp_path / "pp.png").stat().st_size > 10_000
    assert "combined (Fisher)" in (tmp_path / "pp.csv").read_text()


def test_biased_posteriors_fail_and_calibrated_ones_pass(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "b").mkdir()
    good = run_pp_stage(_gaussian_results(tmp_path / "g", n=150, seed=1), tmp_path / "g.json", tmp_path / "g.png")
    bad = run_pp_stage(_gaussian_results(tmp_path / "b", n=150, shift=0.7, seed=1), tmp_path / "b.json", tmp_path / "b.png")
    assert good["combined_pvalue"] > 0.01
    assert bad["combined_pvalue"] < 1e-4


def test_credible_level_and_pp_test_basics():
    assert credible_levels(np.arange(10.0), 2.5) == 0.3
    uniform = {"x": np.linspace(0.005, 0.995, 100)}
    assert pp_test(uniform)["pvalues"]["x"] > 0.99
    skewed = {"x": np.linspace(0, 1, 100) ** 3}
    assert pp_test(skewed)["pvalues"]["x"] < 1e-6


@pytest.fixture(scope="module")
def injections(tiny_products, tmp_path_factory):
    cfg = copy.deepcopy(tiny_products["config"])
    cfg["injections"].update(count=300, n_samples=300)
    d = tmp_path_factory.mktemp("inj")
    run_injections_stage(injection_settings(cfg), tiny_products["psds"], d / "injections.h5")
    return cfg, d / "injections.h5"


def test_injection_snrs_and_noise(injections, tiny_products):
    cfg, path = injections
    inj = load_injections(path)
    snr = inj["snr"]
    n = cfg["injections"]["count"]
    assert snr["network_optimal"].shape == (n,)
    # network SNR is the quadrature sum of the detectors'
    np.testing.assert_allclose(snr["network_optimal"] ** 2, snr["optimal_H1"] ** 2 + snr["optimal_L1"] ** 2, rtol=1e-12)
    # matched-filter SNR = optimal SNR + unit-variance Gaussian noise
    resid = snr["matched_filter_H1"] - snr["optimal_H1"]
    assert abs(resid.mean()) < 0.2 and 0.85 < resid.std() < 1.15
    # each injection's optimal SNR equals bilby's for its parameters, PSD and detector
    import bilby

    from gwnpe.domain import build_domain
    from gwnpe.waveforms import build_waveform_generator

    dom = build_domain(cfg)
    gen = build_waveform_generator(cfg)
    k0, k1 = dom.index_range
    for i in range(3):
        p = {k: float(v[i]) for k, v in inj["parameters"].items()}
        lal = gen.to_lal({k: np.array([p[k]]) for k in ("chirp_mass", "mass_ratio", "theta_jn", "phase")})
        hp, hc = gen.polarizations({k: v[0] for k, v in lal.items()})
        scale = gen.reference_distance / p["luminosity_distance"]
        pols = {"plus": np.zeros(len(dom.full_frequencies), complex), "cross": np.zeros(len(dom.full_frequencies), complex)}
        pols["plus"][k0:k1], pols["cross"][k0:k1] = hp * scale, hc * scale
        ifo = bilby.gw.detector.get_empty_interferometer("H1")
        ifo.minimum_frequency, ifo.maximum_frequency = dom.f_min, dom.f_max
        psd_full = np.ones(len(dom.full_frequencies))
        psd_full[k0:k1] = inj["psd"]["H1"]
        ifo.power_spectral_density = bilby.gw.detector.PowerSpectralDensity(frequency_array=dom.full_frequencies, psd_array=psd_full)
        ifo.set_strain_data_from_zero_noise(sampling_frequency=dom.sampling_frequency, duration=dom.duration,
                                            start_time=inj["start_time"])
        params = {**p, "geocent_time": p["geocent_time"] + cfg["trigger_time"]}
        rho = np.sqrt(np.real(ifo.optimal_snr_squared(ifo.get_detector_response(pols, params))))
        assert snr["optimal_H1"][i] == pytest.approx(rho, rel=1e-6)
    assert inj["start_time"] == pytest.approx(cfg["trigger_time"] + 2 - cfg["domain"]["duration"])


def test_untrained_model_fails_the_pp_test(injections, tiny_products, tmp_path):
    """A model trained for zero epochs is not calibrated: the PP-test must say so."""
    from gwnpe.training import run_train_stage, train_settings

    cfg, path = injections
    c0 = copy.deepcopy(cfg)
    c0["training"]["epochs"] = 0
    run_train_stage(train_settings(c0), tiny_products["training_set"], tiny_products["basis"], tiny_products["psds"],
                    tmp_path / "m0.pt", tmp_path / "h.csv", tmp_path / "l.png", tmp_path / "ck.pt")
    n = cfg["injections"]["count"]
    outs = [tmp_path / f"post_{i}.hdf5" for i in range(n)]
    run_posteriors_stage(tmp_path / "m0.pt", path, outs, n_samples=cfg["injections"]["n_samples"], seed=0, batch_events=50)
    res = run_pp_stage(outs, tmp_path / "pp.json", tmp_path / "pp.png")
    assert res["n_injections"] == n
    assert res["combined_pvalue"] < 0.01, res


def test_posterior_count_mismatch_and_bad_injection_file(injections, tmp_path, tiny_products):
    cfg, path = injections
    with pytest.raises(InjectionError, match="1 posterior files requested for 300 injections"):
        run_posteriors_stage(tmp_path / "not-needed.pt", path, [tmp_path / "a.hdf5"], n_samples=10, seed=0)
    bad = tmp_path / "inj.csv"
    bad.write_text("chirp_mass,mass_ratio\n30,0.5\n")
    c = copy.deepcopy(cfg)
    c["injections"]["file"] = str(bad)
    with pytest.raises(InjectionError, match="no column for"):
        run_injections_stage(injection_settings(c), tiny_products["psds"], tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()
