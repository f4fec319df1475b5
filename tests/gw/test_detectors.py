"""Batched torch detector projection (gwnpe.gw.detectors) against bilby and LAL."""

from __future__ import annotations

import math
from datetime import datetime
from fractions import Fraction

import numpy as np
import pytest
import torch

from gwnpe.gw.detectors import DetectorNetwork, OMEGA_EARTH_SIDEREAL, known_interferometers

REF = 1187008882.4  # GPS reference time [s]
IFOS = ["H1", "L1", "V1", "K1"]
DURATION, FS = 4.0, 1024.0  # 4 s segment, 0..512 Hz grid
F_MIN = 20.0


def _exact_dt(ref, dt_raw):
    """dt such that ref + dt is exactly the double bilby sees: no GPS rounding in comparisons."""
    t = ref + np.asarray(dt_raw, dtype=np.float64)
    return t - ref, t


def _draw(n, seed, half_width=0.2):
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 2 * np.pi, n)
    dec = np.arcsin(rng.uniform(-1, 1, n))
    psi = rng.uniform(0, np.pi, n)
    dt, t = _exact_dt(REF, rng.uniform(-half_width, half_width, n))
    return ra, dec, psi, dt, t


@pytest.fixture(scope="module")
def net():
    return DetectorNetwork(IFOS, REF)


@pytest.fixture(scope="module")
def bilby_ifos():
    import bilby

    return {name: bilby.gw.detector.get_empty_interferometer(name) for name in IFOS}


@pytest.fixture(scope="module")
def waveforms():
    """Three IMRPhenomD polarizations (complex128, 1/Hz) on the 4 s, 0..512 Hz grid."""
    from bilby.gw.source import lal_binary_black_hole

    freqs = np.arange(int(DURATION * FS / 2) + 1) / DURATION
    hp, hc = [], []
    for m1, m2, iota, phase in [(36.0, 29.0, 0.4, 1.3), (12.0, 8.0, 2.1, 0.2), (60.0, 45.0, 1.2, 4.0)]:
        pol = lal_binary_black_hole(
            freqs, mass_1=m1, mass_2=m2, luminosity_distance=400.0, a_1=0.0, tilt_1=0.0, phi_12=0.0,
            a_2=0.0, tilt_2=0.0, phi_jl=0.0, theta_jn=iota, phase=phase, waveform_approximant="IMRPhenomD",
            reference_frequency=50.0, minimum_frequency=F_MIN, maximum_frequency=FS / 2,
        )
        hp.append(pol["plus"])
        hc.append(pol["cross"])
    return freqs, np.array(hp), np.array(hc)


def _bilby_ifo(name, start_time, psd=None):
    import bilby

    ifo = bilby.gw.detector.get_empty_interferometer(name)
    ifo.minimum_frequency = F_MIN
    ifo.maximum_frequency = FS / 2
    if psd is not None:
        ifo.power_spectral_density = bilby.gw.detector.PowerSpectralDensity(
            frequency_array=psd[0], psd_array=psd[1]
        )
    ifo.set_strain_data_from_zero_noise(sampling_frequency=FS, duration=DURATION, start_time=start_time)
    return ifo


def _smooth_psd(freqs):
    f = np.maximum(freqs, 1.0)
    return 1e-47 * ((f / 40.0) ** -4 + 2.0 + (f / 250.0) ** 2)


# ------------------------------------------------------------------ geometry / GMST
def test_geometry_is_bilbys(net, bilby_ifos):
    for k, name in enumerate(IFOS):
        np.testing.assert_array_equal(net.detector_tensors[k].numpy(), bilby_ifos[name].detector_tensor)
        np.testing.assert_array_equal(net.vertices[k].numpy(), bilby_ifos[name].vertex)
    assert net.detector_tensors.shape == (4, 3, 3) and net.vertices.shape == (4, 3)


def _gmst_exact(gps_int: int, frac: Fraction) -> float:
    """LAL's IAU-1982 GMST formula [rad, in [0, 2 pi)] in exact rational arithmetic.

    Same leap seconds (lal.GPSToUTC) and UT1 = UTC as XLALGreenwichMeanSiderealTime, but
    without its double-precision Julian day (which rounds to ~4e-5 s).
    """
    import lal

    utc = datetime(*lal.GPSToUTC(gps_int)[:6]) - datetime(2000, 1, 1, 12)
    T = (Fraction(utc.days * 86400 + utc.seconds) + frac) / Fraction(36525 * 86400)
    g = (
        Fraction("67310.54841")
        + (Fraction(3155760000) + Fraction("8640184.812866")) * T
        + Fraction("0.093104") * T**2
        - Fraction("6.2e-6") * T**3
    )
    return float(g % 86400) * math.pi / 43200


def _wrap(x):
    return (np.asarray(x) + np.pi) % (2 * np.pi) - np.pi


def test_gmst_linear_model_vs_lal(net):
    import lal

    ref_sec = math.floor(REF)
    dts, _ = _exact_dt(REF, np.linspace(-1.0, 1.0, 201))
    model = net.gmst_reference.item() + OMEGA_EARTH_SIDEREAL * dts
    lal_vals = np.array([lal.GreenwichMeanSiderealTime(REF + d) for d in dts])
    exact = np.array(
        [_gmst_exact(math.floor(REF + d), Fraction(REF + d) - math.floor(REF + d)) for d in dts]
    )
    exact_ref = _gmst_exact(ref_sec, Fraction(REF) - ref_sec)
    lal_ref = lal.GreenwichMeanSiderealTime(REF)

    # the reference value is LAL's
    assert net.gmst_reference.item() == math.fmod(lal_ref, 2 * math.pi)
    # within the reference's integer GPS second LAL's Julian-day rounding is constant:
    same_sec = np.floor(REF + dts) == ref_sec
    assert same_sec.sum() > 50
    err_same = np.abs(_wrap(model - lal_vals))[same_sec]
    assert err_same.max() < 1e-10
    # over |dt| <= 1 s (crossing second boundaries) the model follows the exact formula:
    # model - lal = (lal rounding at ref) - (lal rounding at t) + approximation error
    lal_rounding = _wrap(lal_vals - exact)
    approx_err = _wrap(model - lal_vals) - (_wrap(lal_ref - exact_ref) - lal_rounding)
    assert np.abs(_wrap(approx_err)).max() < 1e-10
    # increments of the exact formula are reproduced to the 1e-11 rad rounding of doubles
    assert np.abs(_wrap((model - model[100]) - (exact - exact[100]))).max() < 2e-11
    # LAL's own rounding is bounded (documented as < ~1.5e-9 rad)
    assert np.abs(lal_rounding).max() < 2e-9


# ------------------------------------------------------------------ antenna patterns / delays
def test_antenna_patterns_and_time_delays_match_bilby(net, bilby_ifos):
    ra, dec, psi, dt, t = _draw(200, seed=1)
    fp, fc = net.antenna_patterns(torch.tensor(ra), torch.tensor(dec), torch.tensor(psi), torch.tensor(dt))
    tau = net.time_delays(torch.tensor(ra), torch.tensor(dec), torch.tensor(dt))
    assert fp.shape == fc.shape == tau.shape == (200, 4)
    assert fp.dtype == tau.dtype == torch.float64
    for k, name in enumerate(IFOS):
        ifo = bilby_ifos[name]
        bp = np.array([ifo.antenna_response(*a, "plus") for a in zip(ra, dec, t, psi)])
        bc = np.array([ifo.antenna_response(*a, "cross") for a in zip(ra, dec, t, psi)])
        bt = np.array([ifo.time_delay_from_geocenter(*a) for a in zip(ra, dec, t)])
        np.testing.assert_allclose(fp[:, k].numpy(), bp, rtol=0, atol=1e-10, err_msg=f"{name} F+")
        np.testing.assert_allclose(fc[:, k].numpy(), bc, rtol=0, atol=1e-10, err_msg=f"{name} Fx")
        np.testing.assert_allclose(tau[:, k].numpy(), bt, rtol=0, atol=1e-10, err_msg=f"{name} delay")
        # not vacuous: patterns and delays vary over the draws
        assert np.ptp(bp) > 0.5 and np.ptp(bt) > 5e-3


# ------------------------------------------------------------------ projection
def _bilby_responses(freqs, hp, hc, ra, dec, psi, t, start_time, psd=None):
    """bilby's get_detector_response per sample and ifo: (batch, n_detectors, n_bins), and the interferometers."""
    ifos = [_bilby_ifo(name, start_time, psd) for name in IFOS]
    out = np.zeros((len(ra), len(IFOS), len(freqs)), dtype=complex)
    for b in range(len(ra)):
        params = dict(ra=ra[b], dec=dec[b], psi=psi[b], geocent_time=t[b])
        for k, ifo in enumerate(ifos):
            np.testing.assert_array_equal(ifo.frequency_array, freqs)
            out[b, k] = ifo.get_detector_response({"plus": hp[b], "cross": hc[b]}, params)
    return out, ifos


def _check_close(ours, ref, fp, fc, hp, hc, mask, tol):
    """Per-bin error relative to the size of the two terms |F+ h+| + |Fx hx|."""
    scale = np.abs(fp[..., None] * hp[:, None, :]) + np.abs(fc[..., None] * hc[:, None, :])
    sel = np.broadcast_to(mask, ours.shape) & (scale > 0)
    assert sel.sum() > 0.5 * mask.sum() * ours.shape[0] * ours.shape[1]
    err = (np.abs(ours - ref)[sel] / scale[sel]).max()
    assert err < tol, err
    return err


@pytest.mark.parametrize("start_offset", [0.0, -2.3])
def test_project_matches_bilby_detector_response(net, waveforms, start_offset):
    """start_time = reference_time (+ start_offset, compensated with geocent_shift) reproduces bilby."""
    freqs, hp, hc = waveforms
    ra, dec, psi, dt, t = _draw(3, seed=2)
    start_time = REF + start_offset
    ref, ifos = _bilby_responses(freqs, hp, hc, ra, dec, psi, t, start_time)
    mask = ifos[0].frequency_mask & (np.abs(hp).min(axis=0) > 0)

    shift = None if start_offset == 0.0 else REF - start_time
    ours = net.project(
        torch.tensor(hp), torch.tensor(hc), torch.tensor(freqs), torch.tensor(ra), torch.tensor(dec),
        torch.tensor(psi), torch.tensor(dt), geocent_shift=shift,
    )
    assert ours.shape == (3, 4, len(freqs)) and ours.dtype == torch.complex128
    fp, fc = (x.numpy() for x in net.antenna_patterns(ra, dec, psi, dt))
    _check_close(ours.numpy(), ref, fp, fc, hp, hc, mask, 1e-10)
    # plain per-bin relative error as well (no near-cancellation for these draws)
    rel = np.abs(ours.numpy() - ref)[:, :, mask] / np.abs(ref)[:, :, mask]
    assert rel.max() < 1e-10

    if start_offset != 0.0:
        # without geocent_shift the result differs from bilby by exactly the documented common factor
        plain = net.project(hp, hc, freqs, ra, dec, psi, dt).numpy()
        common = np.exp(-2j * np.pi * freqs * (REF - start_time))
        _check_close(plain * common, ref, fp, fc, hp, hc, mask, 1e-10)
        assert np.abs(plain - ref)[:, :, mask].max() > 0.1 * np.abs(ref).max()  # convention matters


def test_optimal_snr_matches_bilby(net, waveforms):
    freqs, hp, hc = waveforms
    ra, dec, psi, dt, t = _draw(3, seed=3)
    psd = _smooth_psd(freqs)
    start_time = REF - 2.0
    ref, ifos = _bilby_responses(freqs, hp, hc, ra, dec, psi, t, start_time, psd=(freqs, psd))
    ours = net.project(hp, hc, freqs, ra, dec, psi, dt).numpy()
    mask = ifos[0].frequency_mask
    df = freqs[1] - freqs[0]
    snr2 = (np.abs(ours[:, :, mask]) ** 2 * 4 * df / psd[mask]).sum(-1)
    for b in range(3):
        for k, ifo in enumerate(ifos):
            expected = ifo.optimal_snr_squared(ref[b, k]).real
            assert expected > 1.0
            assert abs(snr2[b, k] / expected - 1) < 1e-8, (b, IFOS[k])


# ------------------------------------------------------------------ dtypes, shapes, devices
def test_float32_agrees_with_float64(net, waveforms):
    freqs, hp, hc = waveforms
    ra, dec, psi, dt, _ = _draw(64, seed=4)
    idx = np.arange(64) % 3
    args32 = [torch.tensor(x, dtype=torch.float32) for x in (ra, dec, psi, dt)]
    net32 = DetectorNetwork(IFOS, REF, dtype=torch.float32)
    hp32 = torch.tensor(hp[idx], dtype=torch.complex64)
    hc32 = torch.tensor(hc[idx], dtype=torch.complex64)
    out32 = net32.project(hp32, hc32, torch.tensor(freqs, dtype=torch.float32), *args32)
    assert out32.dtype == torch.complex64 and out32.shape == (64, 4, len(freqs))
    # float64 on the same (float32-rounded) inputs
    out64 = net.project(hp32.to(torch.complex128), hc32.to(torch.complex128), freqs, *[a.double() for a in args32])
    fp, fc = (x.numpy() for x in net.antenna_patterns(*[a.double() for a in args32]))
    mask = np.abs(hp).min(axis=0) > 0
    diff = np.abs(out32.numpy() - out64.numpy())[:, :, mask]
    # relative L2 error of every (sample, ifo) response
    l2 = np.sqrt((diff**2).sum(-1) / (np.abs(out64.numpy()[:, :, mask]) ** 2).sum(-1))
    assert l2.max() < 1e-5, l2.max()
    # per bin, relative to the polarization amplitude (|F| <= 1); relative to the response
    # itself it can reach ~1e-5 where F+ and Fx are both small (float32 cancellation in F)
    per_bin = diff / (np.abs(hp32.numpy()) + np.abs(hc32.numpy()))[:, None, mask]
    assert per_bin.max() < 1e-5, per_bin.max()
    assert per_bin.max() > 1e-9  # genuinely single precision
    fp32, fc32 = net32.antenna_patterns(*args32)
    assert fp32.dtype == torch.float32
    assert np.abs(fp32.numpy() - fp).max() < 1e-5 and np.abs(fc32.numpy() - fc).max() < 1e-5
    tau32 = net32.time_delays(args32[0], args32[1], args32[3])
    tau64 = net.time_delays(*[args32[i].double() for i in (0, 1, 3)])
    assert np.abs(tau32.numpy() - tau64.numpy()).max() < 1e-8


def test_module_to_dtype_and_device_keeps_buffers_consistent(waveforms):
    freqs, hp, hc = waveforms
    net64 = DetectorNetwork(["H1", "V1"], REF)
    net32 = DetectorNetwork(["H1", "V1"], REF, dtype=torch.float32)
    moved = DetectorNetwork(["H1", "V1"], REF).to(torch.float32)
    for name in ("detector_tensors", "vertices", "gmst_reference"):
        a, b = getattr(moved, name), getattr(net32, name)
        assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b), name
        assert getattr(net64, name).dtype == torch.float64
    assert moved.dtype == torch.float32 and moved.device == torch.device("cpu")
    assert dict(moved.named_buffers()).keys() == {"detector_tensors", "vertices", "gmst_reference"}
    assert moved.state_dict() == {}  # geometry is rebuilt from bilby, never loaded

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    ra, dec, psi, dt, _ = _draw(1, seed=5)  # batch of one
    expected = net64.project(hp[:1], hc[:1], freqs, ra, dec, psi, dt)
    assert expected.shape == (1, 2, len(freqs))
    for dev in devices:
        m = DetectorNetwork(["H1", "V1"], REF).to(dev)
        assert {b.device.type for b in m.buffers()} == {torch.device(dev).type}
        out = m.project(
            torch.tensor(hp[:1], device=dev), torch.tensor(hc[:1], device=dev), torch.tensor(freqs, device=dev),
            *[torch.tensor(x, device=dev) for x in (ra, dec, psi, dt)],
        )
        assert out.device.type == torch.device(dev).type
        torch.testing.assert_close(out.cpu(), expected, rtol=1e-12, atol=1e-40)


def test_batched_equals_one_by_one(net, waveforms):
    freqs, hp, hc = waveforms
    ra, dec, psi, dt, _ = _draw(3, seed=6)
    full = net.project(hp, hc, freqs, ra, dec, psi, dt)
    for b in range(3):
        sl = slice(b, b + 1)
        one = net.project(hp[sl], hc[sl], freqs, ra[sl], dec[sl], psi[sl], dt[sl])
        torch.testing.assert_close(one[0], full[b], rtol=1e-13, atol=0)
    # a single waveform (1, n_bins) broadcasts over the batch
    shared = net.project(hp[:1], hc[:1], freqs, ra, dec, psi, dt)
    torch.testing.assert_close(shared[0], full[0], rtol=1e-13, atol=0)


def test_bad_shapes_raise(net, waveforms):
    freqs, hp, hc = waveforms
    ra, dec, psi, dt, _ = _draw(3, seed=7)
    with pytest.raises(ValueError, match="h_plus"):
        net.project(hp[:2], hc, freqs, ra, dec, psi, dt)
    with pytest.raises(ValueError, match="shape"):
        net.antenna_patterns(ra[:, None], dec[:, None], psi[:, None], dt[:, None])
    with pytest.raises(ValueError, match="broadcast"):
        net.time_delays(ra, dec[:2], dt)


# ------------------------------------------------------------------ names
def test_unknown_detector_names_it_and_lists_known():
    with pytest.raises(ValueError) as err:
        DetectorNetwork(["H1", "X7"], REF)
    msg = str(err.value)
    assert "'X7'" in msg
    for name in ("H1", "L1", "V1", "K1"):
        assert name in msg
    assert {"H1", "L1", "V1", "K1"} <= set(known_interferometers())


def test_bad_network_definitions():
    with pytest.raises(ValueError, match="more than once"):
        DetectorNetwork(["H1", "H1"], REF)
    with pytest.raises(ValueError, match="at least one"):
        DetectorNetwork([], REF)
    with pytest.raises(ValueError, match="ET1, ET2, ET3"):
        DetectorNetwork(["ET"], REF)
