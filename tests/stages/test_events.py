"""Events in the DAG (events.list): one job per real event at its own GPS time, on the finished tiny run."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from tests.workflow import finished_tiny_run, planned_jobs, smk


def _event_files(folder, model, gps: float, seed: int, signal: dict | None = None) -> dict:
    """GWOSC-format files of noise (the model's training ASDs) around ``gps`` (200 s before to 40 s after),
    with ``signal`` (bilby parameters, GPS geocent_time) added in every detector."""
    import bilby
    import h5py

    from gwnpe.gw.noise import simulate_noise
    from gwnpe.inference.sampling import model_domain

    dom = model_domain(model)
    fs, t0, length = dom.sampling_frequency, gps - 200.0, 240.0
    freqs = np.arange(int(length * fs) // 2 + 1) / length
    band = dom.frequencies
    files = {}
    for i, (ifo, asd) in enumerate(zip(model.settings["detectors"], model.extra["asds"])):
        psd = np.interp(freqs, band, np.asarray(asd) ** 2, left=asd[0] ** 2, right=asd[-1] ** 2)
        data = simulate_noise(freqs, psd, length, fs, np.random.default_rng(seed + i))
        if signal is not None:
            det = bilby.gw.detector.get_empty_interferometer(ifo)
            det.set_strain_data_from_zero_noise(sampling_frequency=fs, duration=length, start_time=t0)
            wfg = bilby.gw.WaveformGenerator(
                duration=length, sampling_frequency=fs, start_time=t0,
                frequency_domain_source_model=bilby.gw.source.lal_binary_black_hole,
                parameter_conversion=bilby.gw.conversion.convert_to_lal_binary_black_hole_parameters,
                waveform_arguments={"waveform_approximant": "IMRPhenomD", "reference_frequency": 20.0,
                                    "minimum_frequency": dom.f_min, "maximum_frequency": dom.f_max})
            resp = det.get_detector_response(wfg.frequency_domain_strain(signal), signal)
            data = data + np.fft.irfft(resp, n=len(data)) * fs
        path = folder / f"{ifo}_{seed}.hdf5"
        with h5py.File(path, "w") as f:
            ds = f.create_dataset("strain/Strain", data=data)
            ds.attrs["Xstart"], ds.attrs["Xspacing"] = t0, 1 / fs
        files[ifo] = str(path)
    return files


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    wd, cfg, _ = finished_tiny_run(tmp_path_factory)
    return wd, cfg


@pytest.mark.slow
def test_events_run_at_their_own_times_and_adding_one_reruns_nothing_else(tiny_run, tmp_path):
    """Two events 5 and 17 hours after the model's trigger time: only their jobs and the table run (the
    trained products stay), each Result holds the event's time, the rotated sky and ESS; adding a third
    event then plans only its own jobs and the table."""
    from gwnpe.products.model import load_model

    shared, base = tiny_run
    # a copy of the finished run (outputs, times and Snakemake's records), so the shared one stays as other tests expect
    wd = tmp_path / "run"
    shutil.copytree(shared, wd, symlinks=True)
    base = wd / base.relative_to(shared)
    out = wd / "results/tiny"
    model = load_model(out / "model/model.pt")
    cfg = yaml.safe_load(base.read_text())
    t_ref = float(cfg["trigger_time"])
    source = {"chirp_mass": 30.0, "mass_ratio": 0.8, "luminosity_distance": 500.0, "theta_jn": 0.5, "phase": 1.0,
              "psi": 0.3, "ra": 1.5, "dec": 0.4, "a_1": 0.0, "a_2": 0.0, "tilt_1": 0.0, "tilt_2": 0.0,
              "phi_12": 0.0, "phi_jl": 0.0}
    times = {"GWloud": t_ref + 5 * 3600.0 + 0.3, "GWquiet": t_ref + 17 * 3600.0 - 0.2, "GWlater": t_ref + 30 * 3600.0}
    entries = {
        "GWloud": {"name": "GWloud", "gps_time": times["GWloud"], "strain_files": _event_files(
            wd, model, times["GWloud"], 10, {**source, "geocent_time": times["GWloud"] + 0.01})},
        "GWquiet": {"name": "GWquiet", "gps_time": times["GWquiet"], "strain_files": _event_files(
            wd, model, times["GWquiet"], 20)},
        "GWlater": {"name": "GWlater", "gps_time": times["GWlater"], "strain_files": _event_files(
            wd, model, times["GWlater"], 30)},
    }
    settings = {"n_samples": 500, "target_ess": 30, "max_samples": 1500}
    _run_events(wd, out, cfg, entries, settings, times, t_ref)


def _run_events(wd, out, cfg, entries, settings, times, t_ref):
    import bilby
    import pandas as pd

    from gwnpe.gw.detectors import sidereal_offset

    path = wd / "events.yaml"
    path.write_text(yaml.safe_dump({**cfg, "events": {"list": [entries["GWloud"], entries["GWquiet"]], **settings}}))
    assert planned_jobs(smk(wd, path, "-n")) == {"event_sampling": 2, "event_corner": 2, "events": 1, "all": 1,
                                                 "provenance": 1}  # the report's table of the whole config
    res = smk(wd, path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    for name in ("GWloud", "GWquiet"):
        r = bilby.core.result.read_in_result(str(out / f"events/{name}.hdf5"))
        meta = r.meta_data["gwnpe"]
        assert meta["gps_time"] == pytest.approx(times[name]) and meta["reference_time"] == pytest.approx(t_ref)
        assert meta["ra_offset"] == pytest.approx(sidereal_offset(t_ref, times[name]))
        assert (abs(r.posterior["geocent_time"] - times[name]) <= 0.1 + 1e-6).all()
        assert r.posterior["weights"].mean() == pytest.approx(1.0) and meta["importance_sampling"]["n"] >= 500
        assert (out / f"events/corner_{name}.png").stat().st_size > 10_000
    table = pd.read_csv(out / "events/events.csv")
    assert list(table["event"]) == ["GWloud", "GWquiet"]
    loud, quiet = table.set_index("event").loc["GWloud"], table.set_index("event").loc["GWquiet"]
    # the signal is found where it is and not in noise: the loud event's evidence for a signal is large
    assert loud["log_bayes_factor"] > 20 > quiet["log_bayes_factor"]
    assert (table["asd_outside_training"] == "none").all()  # the files' noise is the training ASD's
    # a third event: only its jobs and the table
    path.write_text(yaml.safe_dump({**cfg, "events": {"list": list(entries.values()), **settings}}))
    assert planned_jobs(smk(wd, path, "-n")) == {"event_sampling": 1, "event_corner": 1, "events": 1, "all": 1,
                                                 "provenance": 1}
