"""Waveforms from LALSimulation: physics (SNR against bilby, 1/distance) and refused draws."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gwnpe.gw.domain import build_domain
from gwnpe.errors import WaveformError
from gwnpe.gw.priors import intrinsic_keys, load_priors
from gwnpe.gw.noise import whiten
from gwnpe.errors import WaveformFailure
from gwnpe.gw.waveforms import build_waveform_generator, generate_from_prior

from tests.conftest import REPO, bilby_curve_psd

PARAMS = dict(chirp_mass=28.0, mass_ratio=0.7, theta_jn=0.4, phase=1.3)
EXTRINSIC = dict(ra=1.2, dec=-0.3, psi=0.5, geocent_time=1187008882.4, luminosity_distance=100.0)


def _one(gen, **kw):
    lal = gen.to_lal({k: np.array([v]) for k, v in {**PARAMS, **kw}.items()})
    return gen.polarizations({k: v[0] for k, v in lal.items()})


def test_domain_grid_matches_bilby_mask(config):
    import bilby

    dom = build_domain(config)
    ifo = bilby.gw.detector.get_empty_interferometer("H1")
    ifo.minimum_frequency, ifo.maximum_frequency = dom.f_min, dom.f_max
    ifo.set_strain_data_from_zero_noise(sampling_frequency=dom.sampling_frequency, duration=dom.duration)
    np.testing.assert_array_equal(ifo.frequency_array, dom.full_frequencies)
    np.testing.assert_array_equal(ifo.frequency_array[ifo.frequency_mask], dom.frequencies)


def test_optimal_snr_matches_bilby(config):
    """sum |whitened h|^2 over the band is bilby's optimal SNR^2 for the same signal and PSD."""
    import bilby

    gen = build_waveform_generator(config)
    dom = gen.domain
    hp, hc = _one(gen)
    ifo = bilby.gw.detector.get_empty_interferometer("L1")
    ifo.minimum_frequency, ifo.maximum_frequency = dom.f_min, dom.f_max
    full_f = dom.full_frequencies
    psd_full = bilby_curve_psd(full_f)
    psd_full[0] = psd_full[1]
    ifo.power_spectral_density = bilby.gw.detector.PowerSpectralDensity(frequency_array=full_f, psd_array=psd_full)
    ifo.set_strain_data_from_zero_noise(sampling_frequency=dom.sampling_frequency, duration=dom.duration,
                                        start_time=EXTRINSIC["geocent_time"] - 2)
    k0, k1 = dom.index_range
    pols = {"plus": np.zeros(len(full_f), complex), "cross": np.zeros(len(full_f), complex)}
    pols["plus"][k0:k1], pols["cross"][k0:k1] = hp, hc
    signal = ifo.get_detector_response(pols, {**EXTRINSIC})
    snr2_bilby = np.real(ifo.optimal_snr_squared(signal))
    fp = ifo.antenna_response(EXTRINSIC["ra"], EXTRINSIC["dec"], EXTRINSIC["geocent_time"], EXTRINSIC["psi"], "plus")
    fc = ifo.antenna_response(EXTRINSIC["ra"], EXTRINSIC["dec"], EXTRINSIC["geocent_time"], EXTRINSIC["psi"], "cross")
    hw = whiten(fp * hp + fc * hc, np.sqrt(psd_full[k0:k1]), dom.delta_f)
    snr2 = np.sum(np.abs(hw) ** 2)
    assert snr2_bilby > 1.0
    assert snr2 == pytest.approx(snr2_bilby, rel=1e-8)


def test_amplitude_scales_as_inverse_distance(config):
    gen = build_waveform_generator(config)
    far = dataclasses.replace(gen, reference_distance=3 * gen.reference_distance)
    hp, hc = _one(gen)
    hp3, hc3 = _one(far)
    np.testing.assert_allclose(hp3 * 3, hp, rtol=1e-10, atol=0)
    np.testing.assert_allclose(hc3 * 3, hc, rtol=1e-10, atol=0)


def test_lal_refusal_carries_lal_reason(config):
    gen = build_waveform_generator(config)
    with pytest.raises(WaveformFailure) as info:
        _one(gen, chirp_mass=2000.0)  # ringdown below f_min: IMRPhenomD refuses
    assert "Input domain error" in str(info.value)
    assert "fCut" in str(info.value)


def _half_bad_prior(tmp_path):
    text = (REPO / "config/priors/default.prior").read_text().replace(
        "minimum=20.0, maximum=40.0", "minimum=20.0, maximum=2000.0"
    )
    p = tmp_path / "wide.prior"
    p.write_text(text)
    return load_priors(p, approximant="IMRPhenomD")


def test_refused_draws_are_redrawn_deterministically_and_reported(config, tmp_path):
    gen = build_waveform_generator(config)
    priors = _half_bad_prior(tmp_path)
    keys = intrinsic_keys(priors)
    out1 = generate_from_prior(gen, priors, keys, 40, np.random.default_rng(5), max_failures=10_000)
    out2 = generate_from_prior(gen, priors, keys, 40, np.random.default_rng(5), max_failures=10_000)
    params, hp, hc, failures = out1
    assert len(failures) > 5  # a large part of this prior is beyond IMRPhenomD's range
    assert all(np.isfinite(hp).all() and np.isfinite(hc).all() for _ in [0])
    assert np.all(np.abs(hp).max(axis=1) > 0)
    assert all("Input domain error" in f["reason"] and "chirp_mass" in f["parameters"] for f in failures)
    np.testing.assert_array_equal(hp, out2[1])
    assert failures == out2[3]


def test_too_many_failures_stop_with_the_culprit(config, tmp_path):
    gen = build_waveform_generator(config)
    priors = _half_bad_prior(tmp_path)
    with pytest.raises(WaveformError) as info:
        generate_from_prior(gen, priors, intrinsic_keys(priors), 40, np.random.default_rng(5), max_failures=0)
    msg = str(info.value)
    assert "max_failure_fraction" in msg and "chirp_mass" in msg and "IMRPhenomD" in msg
