"""Injection campaign and posteriors: SNRs against bilby, an untrained model failing the PP-test, bad campaign inputs."""

from __future__ import annotations

import copy

import numpy as np
import pytest


from gwnpe.stages.pp import run_pp_stage
from gwnpe.errors import InjectionError
from gwnpe.products.injections import load_injections
from gwnpe.stages.injections import run_injections_stage
from gwnpe.stages.posteriors import run_posteriors_stage
from gwnpe.stages.settings import stage_settings


@pytest.fixture(scope="module")
def injections(tiny_products, tmp_path_factory):
    cfg = copy.deepcopy(tiny_products["config"])
    cfg["injections"].update(count=300, n_samples=300)
    d = tmp_path_factory.mktemp("inj")
    run_injections_stage(stage_settings(cfg, "injections"), psd_paths=tiny_products["psds"], out_path=d / "injections.h5")
    return cfg, d / "injections.h5"


def test_injection_snrs_and_noise(injections, tiny_products):
    cfg, path = injections
    inj = load_injections(path)
    snr = inj.snr
    n = cfg["injections"]["count"]
    assert snr["network_optimal"].shape == (n,)
    # network SNR is the quadrature sum of the detectors'
    np.testing.assert_allclose(snr["network_optimal"] ** 2, snr["optimal_H1"] ** 2 + snr["optimal_L1"] ** 2, rtol=1e-12)
    # matched-filter SNR = optimal SNR + unit-variance Gaussian noise
    resid = snr["matched_filter_H1"] - snr["optimal_H1"]
    assert abs(resid.mean()) < 0.2 and 0.85 < resid.std() < 1.15
    # each injection's optimal SNR equals bilby's for its parameters, PSD and detector
    import bilby

    from gwnpe.gw.domain import build_domain
    from gwnpe.gw.waveforms import build_waveform_generator

    dom = build_domain(cfg)
    gen = build_waveform_generator(cfg)
    k0, k1 = dom.index_range
    for i in range(3):
        p = {k: float(v[i]) for k, v in inj.parameters.items()}
        lal = gen.to_lal({k: np.array([p[k]]) for k in ("chirp_mass", "mass_ratio", "theta_jn", "phase")})
        hp, hc = gen.polarizations({k: v[0] for k, v in lal.items()})
        scale = gen.reference_distance / p["luminosity_distance"]
        pols = {"plus": np.zeros(len(dom.full_frequencies), complex), "cross": np.zeros(len(dom.full_frequencies), complex)}
        pols["plus"][k0:k1], pols["cross"][k0:k1] = hp * scale, hc * scale
        ifo = bilby.gw.detector.get_empty_interferometer("H1")
        ifo.minimum_frequency, ifo.maximum_frequency = dom.f_min, dom.f_max
        psd_full = np.ones(len(dom.full_frequencies))
        psd_full[k0:k1] = inj.psd["H1"]
        ifo.power_spectral_density = bilby.gw.detector.PowerSpectralDensity(frequency_array=dom.full_frequencies, psd_array=psd_full)
        ifo.set_strain_data_from_zero_noise(sampling_frequency=dom.sampling_frequency, duration=dom.duration,
                                            start_time=inj.start_time)
        params = {**p, "geocent_time": p["geocent_time"] + cfg["trigger_time"]}
        rho = np.sqrt(np.real(ifo.optimal_snr_squared(ifo.get_detector_response(pols, params))))
        assert snr["optimal_H1"][i] == pytest.approx(rho, rel=1e-6)
    assert inj.start_time == pytest.approx(cfg["trigger_time"] + 2 - cfg["domain"]["duration"])


def test_untrained_model_fails_the_pp_test(injections, untrained_model_path, tmp_path):
    """A model trained for zero epochs is not calibrated: the PP-test must say so."""

    cfg, path = injections
    n = cfg["injections"]["count"]
    outs = [tmp_path / f"post_{i}.hdf5" for i in range(n)]
    settings = {"seed": 0, "injections": {"n_samples": cfg["injections"]["n_samples"], "batch_events": 50}}
    run_posteriors_stage(settings, model_path=untrained_model_path, injections_path=path, out_paths=outs)
    res = run_pp_stage(outs, out_json=tmp_path / "pp.json", out_plot=tmp_path / "pp.png")
    assert res["n_injections"] == n
    assert res["combined_pvalue"] < 0.01, res


def test_posterior_count_mismatch_and_bad_injection_file(injections, tmp_path, tiny_products):
    cfg, path = injections
    with pytest.raises(InjectionError, match="1 posterior files requested for 300 injections"):
        run_posteriors_stage({"seed": 0, "injections": {"n_samples": 10, "batch_events": 8}}, model_path=tmp_path / "not-needed.pt",
                             injections_path=path, out_paths=[tmp_path / "a.hdf5"])
    bad = tmp_path / "inj.csv"
    bad.write_text("chirp_mass,mass_ratio\n30,0.5\n")
    c = copy.deepcopy(cfg)
    c["injections"]["file"] = str(bad)
    with pytest.raises(InjectionError, match="no column for"):
        run_injections_stage(stage_settings(c, "injections"), psd_paths=tiny_products["psds"], out_path=tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()
