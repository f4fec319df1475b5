"""The window convention: real (time-domain, Tukey-windowed) data and training see the same noise level.

The analysis PSD is the window factor times the detector's PSD everywhere (gwnpe.gw.domain). Checked
on windowed white noise (unit variance after whitening), and end to end: the same injection given as
time-domain files and as frequency-domain strain gives the same log likelihood ratios and NPE
posteriors.
"""

from __future__ import annotations

import numpy as np
import pytest

from gwnpe.gw.domain import FrequencyDomain, analysis_psd, tukey_window, window_factor
from gwnpe.gw.noise import whiten


def test_window_factor_of_the_default_segment():
    dom = {"duration": 4.0, "sampling_frequency": 1024.0, "roll_off": 0.2}
    w = window_factor(dom)
    # a Tukey window with tapers of r = 0.2 s on T = 4 s: mean(w^2) = 1 - (5/4) r / T
    assert w == pytest.approx(1 - 1.25 * 0.2 / 4.0, abs=5e-4)  # 0.9373 discretely
    assert window_factor({**dom, "roll_off": 0.0}) == 1.0
    assert window_factor({"duration": 4.0, "sampling_frequency": 1024.0}) == 1.0  # models without the key


def test_windowed_noise_whitened_by_the_analysis_psd_has_unit_variance():
    """Stationary noise of PSD S, Tukey-windowed and FFT'd, has PSD w S in the band: whitened by the
    analysis PSD it has unit variance per real component (by the plain PSD: w = 0.937)."""
    settings = {"duration": 4.0, "sampling_frequency": 512.0, "roll_off": 0.2}
    dom = FrequencyDomain(20.0, 200.0, 4.0, 512.0)
    fs, n = 512.0, 2048
    dt = 1 / fs
    sigma = 3.0
    psd = np.full(len(dom), 2 * sigma**2 * dt)  # one-sided PSD of white noise of variance sigma^2
    window = tukey_window(n, 4.0, 0.2)
    k0, k1 = dom.index_range
    rng = np.random.default_rng(1)
    x = rng.normal(scale=sigma, size=(200, n))
    d = (np.fft.rfft(x * window, axis=1) * dt)[:, k0:k1]
    ok = whiten(d, np.sqrt(analysis_psd(psd, settings)), dom.delta_f)
    plain = whiten(d, np.sqrt(psd), dom.delta_f)
    var = np.var(np.concatenate([ok.real.ravel(), ok.imag.ravel()]))
    assert var == pytest.approx(1.0, abs=0.01)  # 2 x 200 x 721 values: standard error 0.004
    assert np.var(plain.real) == pytest.approx(window_factor(settings), abs=0.01)


@pytest.mark.slow
def test_same_injection_as_time_domain_files_and_as_frequency_domain_strain(tiny_model, tiny_products, tmp_path):
    """Time-domain files (windowed in gwnpe) and frequency-domain strain of one injection: log L ratios
    equal within 0.05 and NPE posteriors within 0.002 nat (JSD) on every parameter."""
    import bilby
    import h5py

    from gwnpe.diagnostics.jsd import js_divergence, prior_domain
    from gwnpe.gw.likelihood import build_likelihood, interferometers, log_likelihood_ratios, waveform_generator
    from gwnpe.gw.priors import to_absolute_time
    from gwnpe.inference.sampling import analysis_psds, model_domain, model_priors, sample_posterior, strain_from_time_domain
    from gwnpe.products.model import load_model
    from gwnpe.products.psd import psd_on_domain

    out, _, cfg = tiny_model
    model = load_model(out / "model.pt")
    dom = model_domain(model)
    ifos_ = cfg["detectors"]
    trig = cfg["trigger_time"]
    start = trig + cfg["domain"]["post_trigger_duration"] - cfg["domain"]["duration"]
    welch = {ifo: psd_on_domain(tiny_products["psds"][ifo], dom) for ifo in ifos_}
    truth = {"chirp_mass": 30.0, "mass_ratio": 0.8, "luminosity_distance": 400.0, "theta_jn": 0.6, "ra": 1.3,
             "dec": -0.4, "psi": 0.7, "phase": 1.1, "geocent_time": trig + 0.02, "a_1": 0.0, "a_2": 0.0,
             "tilt_1": 0.0, "tilt_2": 0.0, "phi_12": 0.0, "phi_jl": 0.0}
    approximant, f_ref = cfg["waveform"]["approximant"], cfg["waveform"]["reference_frequency"]
    # the signal on the full grid (bilby, phase origin at the segment start) and stationary noise of the
    # detector PSD, both in the time domain: the data a detector would record
    wfg = waveform_generator(dom, approximant, f_ref, start)
    pols = wfg.frequency_domain_strain(truth)
    n = int(round(dom.duration * dom.sampling_frequency))
    dt = 1 / dom.sampling_frequency
    k0, k1 = dom.index_range
    rng = np.random.default_rng(11)
    ifos = interferometers(dom, {i: np.zeros(len(dom), complex) for i in ifos_}, welch, start)
    window = tukey_window(n, dom.duration, cfg["domain"]["roll_off"])
    files, fd = {}, {}
    for ifo in ifos:
        s_fd = ifo.get_detector_response(pols, truth) * ifo.frequency_mask
        full_psd = np.interp(dom.full_frequencies, dom.frequencies, welch[ifo.name])
        noise_fd = (rng.normal(size=n // 2 + 1) + 1j * rng.normal(size=n // 2 + 1)) * np.sqrt(full_psd * dom.duration / 4)
        noise_fd[0] = noise_fd[-1] = 0
        s_td = np.fft.irfft(s_fd, n) / dt
        n_td = np.fft.irfft(noise_fd, n) / dt
        files[ifo.name] = tmp_path / f"{ifo.name}.hdf5"
        with h5py.File(files[ifo.name], "w") as f:
            ds = f.create_dataset("strain/Strain", data=s_td + n_td)
            ds.attrs["Xstart"], ds.attrs["Xspacing"] = start, dt
        # the same injection in the frequency domain, as gwnpe's injections hold it: the signal unwindowed,
        # the noise a realisation of the analysis PSD (here: this windowed noise)
        fd[ifo.name] = s_fd[k0:k1] + (np.fft.rfft(n_td * window) * dt)[k0:k1]
    td, td_start, w = strain_from_time_domain(model, files)
    assert td_start == pytest.approx(start)
    psd_td = analysis_psds(model, welch, w)  # Welch PSDs of the detector, as `gwnpe sample --psd` gives them
    psd_fd = analysis_psds(model)  # the model's own
    for ifo in ifos_:
        np.testing.assert_allclose(psd_td[ifo], psd_fd[ifo], rtol=1e-9)

    priors = to_absolute_time(model_priors(model), trig)
    post = sample_posterior(model, fd, psd_fd, 4000, start_time=start, seed=3)
    post_td = sample_posterior(model, td, psd_td, 4000, start_time=start, seed=3)
    draws = {k: np.append(post["samples"][k][:40], truth[k]) for k in model.parameter_names}
    lk = {name: build_likelihood(dom, strain, psds, start, approximant, f_ref, priors=priors)
          for name, strain, psds in (("fd", fd, psd_fd), ("td", td, psd_td))}
    fixed = {k: v for k, v in truth.items() if k not in draws}
    lfd = log_likelihood_ratios(lk["fd"], draws, fixed)
    ltd = log_likelihood_ratios(lk["td"], draws, fixed)
    assert lfd[-1] > 20  # a clear signal, so that the check means something
    np.testing.assert_allclose(ltd, lfd, atol=0.05)
    for k in model.parameter_names:
        bounds, periodic = prior_domain(priors[k])
        j, _ = js_divergence(post["samples"][k], post_td["samples"][k], bounds=bounds, periodic=periodic, name=k)
        assert j <= 0.002, (k, j)
    assert bilby  # bilby's likelihood was the judge
