"""The on-the-fly simulator: bilby's optimal SNR, white unit-variance noise, the fast signal path equals the reference projection."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from tests.conftest import simulator, training_data


def test_on_the_fly_signal_has_bilby_optimal_snr(tiny_products):
    """The whitened signal's optimal SNR equals bilby's for the same parameters, PSD and detectors (< 1%)."""
    import bilby

    from gwnpe.products.training_set import load_training_set
    from gwnpe.gw.waveforms import build_waveform_generator

    p = tiny_products
    cfg = p["config"]
    sim, dom, asds = simulator(p)
    data = training_data(p["training_set"])
    ts = load_training_set(p["training_set"])
    gen = build_waveform_generator(cfg)
    idx = torch.arange(5)
    ext = sim.draw_extrinsic(5, torch.Generator().manual_seed(1))
    ext["luminosity_distance"] = torch.full((5,), 400.0, dtype=torch.float64)
    sig = sim.signal(data.h_plus[idx], data.h_cross[idx], ext).numpy()
    k0, k1 = dom.index_range
    for b in range(5):
        intr = {k: np.array([ts.parameters[k][b]]) for k in ts.parameters}
        lal = gen.to_lal({**intr, **{k: np.array([v]) for k, v in {"a_1": 0.0, "a_2": 0.0}.items()}})
        hp, hc = gen.polarizations({k: v[0] for k, v in lal.items()})
        scale = cfg["waveform"]["reference_distance"] / 400.0
        pols = {"plus": np.zeros(len(dom.full_frequencies), complex), "cross": np.zeros(len(dom.full_frequencies), complex)}
        pols["plus"][k0:k1], pols["cross"][k0:k1] = hp * scale, hc * scale
        params = {k: float(v[b]) for k, v in ext.items()}
        params["geocent_time"] += cfg["trigger_time"]
        for j, ifo_name in enumerate(cfg["detectors"]):
            ifo = bilby.gw.detector.get_empty_interferometer(ifo_name)
            ifo.minimum_frequency, ifo.maximum_frequency = dom.f_min, dom.f_max
            psd_full = np.full(len(dom.full_frequencies), 1.0)
            psd_full[k0:k1] = asds[j] ** 2
            ifo.power_spectral_density = bilby.gw.detector.PowerSpectralDensity(frequency_array=dom.full_frequencies, psd_array=psd_full)
            ifo.set_strain_data_from_zero_noise(sampling_frequency=dom.sampling_frequency, duration=dom.duration,
                                                start_time=cfg["trigger_time"] - 2)
            snr_bilby = np.sqrt(np.real(ifo.optimal_snr_squared(ifo.get_detector_response(pols, params))))
            snr = np.sqrt(np.sum(np.abs(sig[b, j]) ** 2))
            assert snr == pytest.approx(snr_bilby, rel=0.01), (b, ifo_name)


def test_on_the_fly_noise_is_white_with_unit_variance(tiny_products):
    sim, dom, _ = simulator(tiny_products, dtype=torch.float32)
    n = sim.noise((2000, 2, len(dom)), torch.Generator().manual_seed(0))
    assert n.dtype == torch.complex64
    for part in (n.real, n.imag):
        assert float(part.var()) == pytest.approx(1.0, abs=0.01)
        assert abs(float(part.mean())) < 0.01
    # independent bins: neighbouring-bin correlation ~ 0
    corr = float((n.real[..., 1:] * n.real[..., :-1]).mean())
    assert abs(corr) < 0.01


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_fast_signal_path_equals_the_reference_projection(tiny_products, dtype, rtol):
    """Simulator.signal (coefficient-space combination + phasor tables) = DetectorNetwork.project on the expanded waveform."""
    sim, dom, _ = simulator(tiny_products, dtype=dtype)
    data = training_data(tiny_products["training_set"])
    idx = torch.arange(16)
    ext = sim.draw_extrinsic(16, torch.Generator().manual_seed(2))
    fast = sim.signal(data.h_plus[idx], data.h_cross[idx], ext)
    ref64, _, _ = simulator(tiny_products, dtype=torch.float64)
    hp = data.h_plus[idx].to(torch.complex128) @ ref64.VH
    hc = data.h_cross[idx].to(torch.complex128) @ ref64.VH
    slow = ref64.network.project(hp, hc, ref64.frequencies, ext["ra"], ext["dec"], ext["psi"], ext["geocent_time"])
    slow = slow * ref64.ratio[None] * (ref64.reference_distance / ext["luminosity_distance"])[:, None, None]
    err = (fast.to(torch.complex128) - slow).abs().max() / slow.abs().max()
    assert float(err) < rtol
