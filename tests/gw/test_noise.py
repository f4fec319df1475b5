"""Noise: Welch recovers the simulated PSD with the expected scatter, one-sided edge bins, simulated noise."""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pytest
from scipy.signal import get_window

from gwnpe.config import read_config
from gwnpe.errors import ConfigError
from gwnpe.gw.domain import build_domain
from gwnpe.gw.noise import load_noise_curve, simulate_noise, welch_psd, welch_segments
from gwnpe.gw.strain_io import psd_window
from gwnpe.stages.psd import estimate_psd, get_psd_strain

from tests.conftest import REPO


@pytest.fixture(scope="module")
def tiny():
    return read_config(REPO / "config" / "tiny.yaml")


def expected_relative_std(window: str, nperseg: int, noverlap: int, n_segments: int, method: str) -> float:
    """Relative std of a Welch estimate of Gaussian noise.

    Each periodogram bin is PSD * chi^2_2 / 2 (relative std 1). Averaging K of them with
    overlap gives variance (1/K) [1 + 2 sum_j (1 - j/K) rho_j^2], with rho_j the window's
    overlap correlation at lag j segments (Welch 1967; 0.167 for Hann at 50%). The median
    of exponential variables has asymptotic variance 1 / (K f(m)^2 4) = 1/K around
    m = ln 2, i.e. a relative std larger by 1/ln 2 (the bias correction rescales m to 1).
    """
    w = get_window(window, nperseg)
    step = nperseg - noverlap
    infl = 1.0
    for j in range(1, nperseg // step + 1):
        rho = np.sum(w[: nperseg - j * step] * w[j * step :]) / np.sum(w**2)
        infl += 2 * (1 - j / n_segments) * rho**2
    std = np.sqrt(infl / n_segments)
    return std / np.log(2) if method == "median" else std


@pytest.fixture(scope="module")
def o4_noise():
    """1024 s of noise at 1024 Hz from bilby's aLIGO O4 high-sensitivity curve."""
    duration, fs = 1024.0, 1024.0
    f = np.arange(int(duration * fs) // 2 + 1) / duration
    ref = load_noise_curve("aLIGO_O4_high_asd.txt", f)
    x = simulate_noise(f, ref, duration, fs, np.random.default_rng(20260101))
    return x, 1.0 / fs


@pytest.mark.parametrize("method", ["median", "mean"])
def test_welch_recovers_input_psd(o4_noise, method, record_property):
    x, dt = o4_noise
    fs, seg = 1.0 / dt, 4.0
    freqs, psd = welch_psd(x, dt, seg, overlap=0.5, window="hann", method=method)
    np.testing.assert_array_equal(freqs, np.arange(int(seg * fs) // 2 + 1) / seg)
    ref = load_noise_curve("aLIGO_O4_high_asd.txt", freqs)
    band = (freqs >= 20.0) & (freqs <= 0.9 * fs / 2)
    ratio = psd[band] / ref[band]
    assert np.all(np.isfinite(ratio))

    median_ratio = np.median(ratio)
    nperseg = int(seg * fs)
    k = welch_segments(len(x), nperseg, nperseg // 2)
    assert k == 511
    q16, q84 = np.percentile(ratio, [16, 84])
    scatter = (q84 - q16) / 2  # robust: the curve's narrow lines (38, 60, 306 Hz) are smeared by the window
    expected = expected_relative_std("hann", nperseg, nperseg // 2, k, method)
    record_property("median_ratio", median_ratio)
    record_property("scatter_over_expected", scatter / expected)
    print(f"{method}: median ratio {median_ratio:.4f}, scatter {scatter:.4f}, expected {expected:.4f}")
    assert abs(median_ratio - 1) < 0.02
    assert 0.7 < scatter / expected < 1.5
    assert 0.7 < psd[-1] / ref[-1] < 1.3  # the Nyquist bin too


def test_welch_options():
    x = np.random.default_rng(0).standard_normal(64 * 128)
    dt = 1 / 128.0
    for window in ("tukey", "blackman", "hamming", "boxcar"):
        f, p = welch_psd(x, dt, 2.0, 0.5, window, "mean", tukey_alpha=0.2)
        assert len(f) == 129 and f[1] == 0.5
        # white noise of unit variance: one-sided PSD 2 dt
        assert np.median(p[5:-5]) == pytest.approx(2 * dt, rel=0.1)
    with pytest.raises(ConfigError, match="whole number of samples"):
        welch_psd(x, dt, 2.001, 0.5, "hann", "median")


@pytest.mark.parametrize("method", ["median", "mean"])
def test_nyquist_bin_is_one_sided(method):
    """f_max may be the Nyquist frequency: its bin must estimate the one-sided PSD too
    (scipy leaves it two-sided, and chi^2_1- rather than chi^2_2-distributed)."""
    dt = 1 / 256.0
    x = np.random.default_rng(5).standard_normal(2**20)  # white, variance 1: PSD = 2 dt
    f, p = welch_psd(x, dt, 1.0, 0.5, "hann", method)
    assert f[-1] == 128.0
    assert np.median(p[1:-1]) / (2 * dt) == pytest.approx(1, abs=0.01)
    assert p[-1] / (2 * dt) == pytest.approx(1, abs=0.1)  # uncorrected: 0.5 (mean), 0.32 (median)


def test_zero_psd_bins_give_finite_noise_and_estimate():
    import pycbc.psd

    duration, fs = 256.0, 1024.0
    n_f = int(duration * fs) // 2 + 1
    ref = pycbc.psd.aLIGOZeroDetHighPower(n_f, 1.0 / duration, 10.0).numpy()
    assert ref[-1] == 0 and ref[0] == 0  # zero at DC, below 10 Hz and at the last bin
    f = np.arange(n_f) / duration
    x = simulate_noise(f, ref, duration, fs, np.random.default_rng(3))
    assert np.all(np.isfinite(x)) and x.std() > 0
    # no noise at all where the PSD is zero
    xf = np.fft.rfft(x)
    assert np.max(np.abs(xf[f < 9.9])) < 1e-10 * np.max(np.abs(xf))
    assert np.abs(xf[-1]) < 1e-10 * np.max(np.abs(xf))
    freqs, psd = welch_psd(x, 1 / fs, 4.0, 0.5, "hann", "median")
    band = (freqs >= 20) & (freqs <= 0.9 * fs / 2)
    assert np.all(np.isfinite(psd)) and np.all(psd[band] > 0)
    ref4 = np.interp(freqs, f, ref)
    assert abs(np.median(psd[band] / ref4[band]) - 1) < 0.03


def test_simulated_noise_deterministic_per_detector(tiny):
    cfg = copy.deepcopy(tiny)
    f1, p1, r1, i1 = estimate_psd("H1", cfg)
    f2, p2, r2, i2 = estimate_psd("H1", copy.deepcopy(cfg))
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(p1, p2)
    assert i1 == i2
    _, p_l1, _, _ = estimate_psd("L1", cfg)
    assert not np.array_equal(p1, p_l1)  # same curve, different detector index -> different noise
    band = (f1 >= 20) & (f1 <= 256)
    assert np.all(p1[band] != p_l1[band])
    cfg2 = copy.deepcopy(cfg)
    cfg2["seed"] = cfg["seed"] + 1
    _, p_seed, _, _ = estimate_psd("H1", cfg2)
    assert not np.array_equal(p1, p_seed)
    # the noise itself, not just the estimate
    from gwnpe.seeding import stage_rng

    _, _, x_h1 = get_psd_strain("H1", cfg, stage_rng(cfg["seed"], "psd", 0))
    _, _, x_h1b = get_psd_strain("H1", cfg, stage_rng(cfg["seed"], "psd", 0))
    _, _, x_l1 = get_psd_strain("L1", cfg, stage_rng(cfg["seed"], "psd", 1))
    np.testing.assert_array_equal(x_h1, x_h1b)
    # independent streams: whitened in-band Fourier coefficients are uncorrelated (~1/sqrt(N_bins))
    T = len(x_h1) / cfg["domain"]["sampling_frequency"]
    f = np.arange(len(x_h1) // 2 + 1) / T
    keep = (f >= 20) & (f <= 200)
    asd = np.sqrt(load_noise_curve(cfg["psd"]["noise_curve"], f[keep]))
    a, b = np.fft.rfft(x_h1)[keep] / asd, np.fft.rfft(x_l1)[keep] / asd
    coherence = abs(np.vdot(a, b)) / np.sqrt(np.vdot(a, a).real * np.vdot(b, b).real)
    assert coherence < 5 / np.sqrt(keep.sum())


def test_estimate_from_faster_file_truncated_to_domain(tmp_path, tiny):
    cfg = copy.deepcopy(tiny)
    start, end = psd_window(cfg)
    fs, t0 = 1024.0, np.floor(start) - 16  # file at twice the domain's rate, covering the window
    duration = np.ceil(end - t0) + 16
    f = np.arange(int(duration * fs) // 2 + 1) / duration
    x = simulate_noise(f, load_noise_curve("aLIGO_O4_high_asd.txt", f), duration, fs, np.random.default_rng(9))
    path = tmp_path / "H-H1-strain.hdf5"
    with h5py.File(path, "w") as h:
        d = h.create_dataset("strain/Strain", data=x)
        d.attrs["Xstart"], d.attrs["Xspacing"] = t0, 1 / fs
    cfg["psd"].update(source="files", strain_files={"H1": str(path), "L1": str(path)})
    freqs, psd, ref, info = estimate_psd("H1", cfg)
    domain = build_domain(cfg)
    np.testing.assert_array_equal(freqs, domain.full_frequencies)
    assert info["sampling_frequency"] == fs and info["source"] == "files"
    assert start <= info["strain_start"] < start + 1 / fs
    # samples at t0 + i dt for t in [start, end): the last one precedes the analysed segment
    last_sample = info["strain_end"] - 1 / fs
    assert last_sample < end and info["strain_end"] - start == pytest.approx(end - start, abs=1 / fs)
    assert info["n_averages"] == 127
    band = (freqs >= domain.f_min) & (freqs <= 0.9 * domain.f_max)
    assert abs(np.median(psd[band] / ref[band]) - 1) < 0.04
