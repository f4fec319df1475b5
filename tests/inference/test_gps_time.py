"""One model at any GPS time: the sky rotated by the sidereal-time difference (gwnpe.inference.sampling.at_gps_time)."""

from __future__ import annotations

import numpy as np
import pytest

from gwnpe.errors import InferenceError
from gwnpe.gw.detectors import sidereal_offset
from gwnpe.inference.sampling import (asd_outside_training, at_gps_time, model_domain, sample_posterior,
                                      whitened_strain)
from gwnpe.products.model import load_model

REFERENCE = 1187008882.4
#: three event times spread over a day (and one a year later)
EVENTS = [REFERENCE + 3 * 3600.0 + 0.137, REFERENCE + 11 * 3600.0 + 0.52, REFERENCE + 20 * 3600.0 - 0.3,
          REFERENCE + 365.25 * 86400.0]


@pytest.mark.parametrize("event", EVENTS)
def test_rotated_sky_gives_bilby_the_same_antenna_responses_and_delays(event):
    """bilby's antenna patterns and geocentre delays at the event time for ra + offset equal those at the
    reference time for ra, for every detector, sky position, polarisation and offset within the prior."""
    import bilby

    rng = np.random.default_rng(3)
    off = sidereal_offset(REFERENCE, event)
    assert 0 <= off < 2 * np.pi
    ifos = bilby.gw.detector.InterferometerList(["H1", "L1", "V1"])
    for _ in range(20):
        ra, dec, psi, dt = rng.uniform(0, 2 * np.pi), np.arcsin(rng.uniform(-1, 1)), rng.uniform(0, np.pi), rng.uniform(-0.1, 0.1)
        for ifo in ifos:
            for mode in ("plus", "cross"):
                ref = ifo.antenna_response(ra, dec, REFERENCE + dt, psi, mode)
                ev = ifo.antenna_response(np.mod(ra + off, 2 * np.pi), dec, event + dt, psi, mode)
                assert ev == pytest.approx(ref, abs=1e-9)
            assert ifo.time_delay_from_geocenter(np.mod(ra + off, 2 * np.pi), dec, event + dt) == pytest.approx(
                ifo.time_delay_from_geocenter(ra, dec, REFERENCE + dt), abs=1e-10)  # 0.1 ns: LAL's GMST round-off
    # and the rotation is needed: without it the responses differ (for an offset away from 0 mod 2 pi)
    if min(off, 2 * np.pi - off) > 0.05:
        diff = max(abs(ifos[0].antenna_response(ra, 0.3, event, 0.2, "plus") - ifos[0].antenna_response(ra, 0.3, REFERENCE, 0.2, "plus"))
                   for ra in np.linspace(0, 2 * np.pi, 13))
        assert diff > 1e-2


def _bilby_strain(model, params: dict, trigger: float) -> tuple[dict, float]:
    """Noise-free FD strain of ``params`` (GPS geocent_time) on the model's band, segment start as an FFT gives."""
    from gwnpe.gw.likelihood import interferometers, waveform_generator

    dom = model_domain(model)
    start = trigger + 2.0 - dom.duration
    zeros = {ifo: np.zeros(len(dom), complex) for ifo in model.settings["detectors"]}
    psds = {ifo: a**2 for ifo, a in zip(model.settings["detectors"], model.extra["asds"])}
    ifos = interferometers(dom, zeros, psds, start)
    wfg = waveform_generator(dom, "IMRPhenomD", 20.0, start)
    pol = wfg.frequency_domain_strain(params)
    k0, k1 = dom.index_range
    return {ifo.name: ifo.get_detector_response(pol, params)[k0:k1] for ifo in ifos}, start


def test_a_model_at_another_time_gives_the_rotated_posterior(tiny_model):
    """The same source seen at the reference time (ra) and at an event time 7 hours later (ra + offset)
    reaches the network as the same whitened data, and the view of the model at the event time returns the
    same samples and densities with ra rotated and geocent_time moved to the event: the exact map."""
    out, _, cfg = tiny_model
    model = load_model(out / "model.pt")
    ref = float(cfg["trigger_time"])
    event = ref + 7 * 3600.0 + 0.25
    view = at_gps_time(model, event)
    off = sidereal_offset(ref, event)
    assert view.settings["ra_offset"] == pytest.approx(off) and view.settings["reference_time"] == ref
    assert model.settings["trigger_time"] == ref and "reference_time" not in model.settings  # the model is untouched
    src = {"chirp_mass": 28.0, "mass_ratio": 0.8, "luminosity_distance": 400.0, "theta_jn": 0.6, "phase": 1.1,
           "psi": 0.4, "ra": 2.0, "dec": -0.5, "a_1": 0.0, "a_2": 0.0, "tilt_1": 0.0, "tilt_2": 0.0, "phi_12": 0.0,
           "phi_jl": 0.0}
    s_ref, start_ref = _bilby_strain(model, {**src, "geocent_time": ref + 0.01}, ref)
    s_ev, start_ev = _bilby_strain(model, {**src, "ra": np.mod(src["ra"] + off, 2 * np.pi), "geocent_time": event + 0.01},
                                   event)
    psds = {ifo: a**2 for ifo, a in zip(model.settings["detectors"], model.extra["asds"])}
    d_ref = whitened_strain(model, s_ref, psds, start_ref)
    d_ev = whitened_strain(view, s_ev, psds, start_ev)
    assert np.linalg.norm(d_ev - d_ref) < 1e-6 * np.linalg.norm(d_ref)
    # a fixed source would give other data at the event time
    s_fixed, _ = _bilby_strain(model, {**src, "geocent_time": event + 0.01}, event)
    assert np.linalg.norm(whitened_strain(view, s_fixed, psds, start_ev) - d_ref) > 0.1 * np.linalg.norm(d_ref)

    a = sample_posterior(model, s_ref, psds, 400, start_time=start_ref, seed=5)
    b = sample_posterior(view, s_ev, psds, 400, start_time=start_ev, seed=5)
    np.testing.assert_allclose(b["log_q"], a["log_q"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b["samples"]["geocent_time"] - event, a["samples"]["geocent_time"] - ref, atol=1e-5)
    np.testing.assert_allclose(np.mod(b["samples"]["ra"] - a["samples"]["ra"] - off + np.pi, 2 * np.pi) - np.pi, 0,
                               atol=1e-4)
    np.testing.assert_allclose(b["samples"]["dec"], a["samples"]["dec"], atol=1e-5)
    assert ((b["samples"]["ra"] >= 0) & (b["samples"]["ra"] < 2 * np.pi)).all()


def test_another_time_needs_a_uniform_ra_prior(tiny_model):
    out, _, _ = tiny_model
    model = load_model(out / "model.pt")
    assert at_gps_time(model, model.settings["trigger_time"]) is model  # the trained time: the model itself
    text = "\n".join("ra = 1.0" if line.startswith("ra =") else line for line in model.settings["prior_file"].splitlines())
    model.settings = {**model.settings, "prior_file": text}
    model._gwnpe_priors = None
    with pytest.raises(InferenceError, match=r"only when right ascension is sampled from Uniform\(0, 2 pi\)"):
        at_gps_time(model, model.settings["trigger_time"] + 3600.0)


def test_an_asd_unlike_the_training_one_is_named(tiny_model, caplog):
    out, _, _ = tiny_model
    model = load_model(out / "model.pt")
    f = model_domain(model).frequencies
    psds = {ifo: a**2 for ifo, a in zip(model.settings["detectors"], model.extra["asds"])}
    assert asd_outside_training(model, psds) == []
    louder = dict(psds)
    louder["L1"] = psds["L1"] * np.where(f >= 80.0, 2.0**2, 1.0)  # twice the ASD above 80 Hz
    with caplog.at_level("WARNING"):
        found = asd_outside_training(model, louder)
    assert found and {o["detector"] for o in found} == {"L1"}
    assert min(o["f_low"] for o in found) >= 80.0 - 1e-9 and all(o["ratio"] == pytest.approx(2.0) for o in found)
    assert "L1: the event's ASD is 2.00x" in caplog.text


def test_gps_time_through_the_cli_with_psds_from_the_files(tiny_model, tmp_path):
    """`gwnpe sample --gps-time T` with GWOSC-format files around T: Welch PSDs from the data before the
    segment, the sky rotated, the event's time in the Result."""
    import subprocess
    import sys
    from pathlib import Path

    import bilby
    import h5py

    from gwnpe.gw.noise import simulate_noise

    out, _, cfg = tiny_model
    model = load_model(out / "model.pt")
    fs = cfg["domain"]["sampling_frequency"]
    event = cfg["trigger_time"] + 5 * 3600.0
    t0 = event - 140.0  # 128 s (32 segments) before the segment's start at event - 2, and a little more
    n = int(160 * fs)
    freqs = np.arange(n // 2 + 1) / 160.0
    files = {}
    for i, (ifo, asd) in enumerate(zip(cfg["detectors"], model.extra["asds"])):
        band = model_domain(model).frequencies
        psd = np.interp(freqs, band, np.asarray(asd) ** 2, left=asd[0] ** 2, right=asd[-1] ** 2)
        files[ifo] = tmp_path / f"{ifo}.hdf5"
        with h5py.File(files[ifo], "w") as f:
            ds = f.create_dataset("strain/Strain", data=simulate_noise(freqs, psd, 160.0, fs, np.random.default_rng(i)))
            ds.attrs["Xstart"], ds.attrs["Xspacing"] = t0, 1 / fs
    res = subprocess.run(
        [str(Path(sys.executable).with_name("gwnpe")), "sample", "--model", str(out / "model.pt"), "--strain",
         *[f"{k}={v}" for k, v in files.items()], "--gps-time", str(event), "-n", "300",
         "-o", str(tmp_path / "post.hdf5"), "--seed", "1"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Welch PSDs from the files" in res.stderr
    r = bilby.core.result.read_in_result(str(tmp_path / "post.hdf5"))
    meta = r.meta_data["gwnpe"]
    assert meta["gps_time"] == pytest.approx(event) and meta["reference_time"] == pytest.approx(cfg["trigger_time"])
    assert meta["ra_offset"] == pytest.approx(sidereal_offset(cfg["trigger_time"], event))
    assert meta["psd"] == "estimated from the strain files" and meta["asd_outside_training"] == "[]"
    t = r.posterior["geocent_time"]
    assert (abs(t - event) <= 0.1 + 1e-6).all()  # the prior's +-0.1 s around the event, not the reference
    # files too short for the PSD window are named, with the fix
    res = subprocess.run(
        [str(Path(sys.executable).with_name("gwnpe")), "sample", "--model", str(out / "model.pt"), "--strain",
         *[f"{k}={v}" for k, v in files.items()], "--gps-time", str(event), "--psd-duration", "300", "-n", "100",
         "-o", str(tmp_path / "post2.hdf5")], capture_output=True, text=True)
    assert res.returncode != 0 and "--psd-duration" in res.stderr and "H1.hdf5" in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "post2.hdf5").exists()


def test_gps_time_must_match_a_frequency_domain_file(tiny_model, tmp_path):
    """A gwnpe frequency-domain strain file holds the segment of its own trigger time: another --gps-time is refused."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import noise_strain_file

    out, _, cfg = tiny_model
    noise_strain_file(out / "model.pt", cfg["trigger_time"], tmp_path / "fd.hdf5")
    res = subprocess.run(
        [str(Path(sys.executable).with_name("gwnpe")), "sample", "--model", str(out / "model.pt"), "--strain",
         str(tmp_path / "fd.hdf5"), "--gps-time", str(cfg["trigger_time"] + 100.0), "-n", "100",
         "-o", str(tmp_path / "post.hdf5")], capture_output=True, text=True)
    assert res.returncode != 0 and "holds a segment around GPS" in res.stderr and "--gps-time" in res.stderr, res.stderr
    assert not (tmp_path / "post.hdf5").exists()
