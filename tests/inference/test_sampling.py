"""Posterior sampling with a trained model: shapes, units, prior bounds, bad inputs, time-domain files via the CLI."""

from __future__ import annotations


import numpy as np
import pytest

from gwnpe.inference.sampling import model_priors
from gwnpe.errors import InferenceError
from gwnpe.inference.sampling import sample_posterior
from gwnpe.products.results import save_result
from gwnpe.products.model import load_model
from tests.conftest import noise_event
from gwnpe.gw.priors import load_priors


def _event(model, p, seed=0):
    return noise_event(model, seed)


def test_sampling_shapes_units_and_prior_bounds(tiny_model, tiny_products, tmp_path):
    import bilby

    out, _, cfg = tiny_model
    model = load_model(out / "model.pt")
    strain, psds = _event(model, tiny_products)
    res = sample_posterior(model, strain, psds, 3000, start_time=cfg["trigger_time"] - 2, seed=1)
    s = res["samples"]
    priors = load_priors(cfg["priors"])
    for k in model.parameter_names:
        assert s[k].shape == (3000,)
        if k == "geocent_time":
            assert np.all(np.abs(s[k] - cfg["trigger_time"] - 0.0) <= 0.1 + 1e-6)  # GPS seconds
        else:
            assert priors[k].minimum <= s[k].min() and s[k].max() <= priors[k].maximum, k
    assert np.all(s["mass_1"] >= s["mass_2"])  # derived masses, detector frame, Msun
    assert res["log_q"].shape == (3000,) and np.isfinite(res["log_q"]).all()
    path = tmp_path / "posterior.hdf5"
    save_result(path, model, model_priors(model), s, res["log_q"], res["sampling_time"], injection_parameters={"chirp_mass": 30.0})
    r = bilby.core.result.read_in_result(str(path))
    assert len(r.posterior) == 3000 and "mass_1" in r.posterior and r.injection_parameters["chirp_mass"] == 30.0
    assert r.sampler == "gwnpe"


def test_inference_bad_inputs(tiny_model, tiny_products):
    out, _, _ = tiny_model
    model = load_model(out / "model.pt")
    strain, psds = _event(model, tiny_products)
    with pytest.raises(InferenceError, match="trained for detectors"):
        sample_posterior(model, {"H1": strain["H1"], "V1": strain["L1"]}, psds, 10)
    nan = {**strain, "L1": strain["L1"].copy()}
    nan["L1"][10] = np.nan
    with pytest.raises(InferenceError, match="non-finite"):
        sample_posterior(model, nan, psds, 10)
    with pytest.raises(InferenceError, match="another grid"):
        sample_posterior(model, strain, {**psds, "H1": psds["H1"][:-3]}, 10)
    with pytest.raises(InferenceError, match="another grid"):
        sample_posterior(model, {k: v[::2] for k, v in strain.items()}, psds, 10)


def test_time_domain_strain_files_through_the_cli(tiny_model, tiny_products, tmp_path):
    """GWOSC-format time-domain files of the segment -> windowed FFT -> samples, via `gwnpe sample`."""
    import subprocess
    import sys
    from pathlib import Path

    import bilby
    import h5py

    from gwnpe.inference.sampling import strain_from_time_domain

    out, _, cfg = tiny_model
    model = load_model(out / "model.pt")
    fs, T = cfg["domain"]["sampling_frequency"], cfg["domain"]["duration"]
    t0 = cfg["trigger_time"] - 8.0  # file longer than the segment on both sides
    rng = np.random.default_rng(4)
    files = {}
    for ifo in cfg["detectors"]:
        files[ifo] = tmp_path / f"{ifo}.hdf5"
        with h5py.File(files[ifo], "w") as f:
            ds = f.create_dataset("strain/Strain", data=rng.normal(size=int(16 * fs)) * 1e-22)
            ds.attrs["Xstart"], ds.attrs["Xspacing"] = t0, 1 / fs
    strain, start, wf = strain_from_time_domain(model, files)
    assert start == pytest.approx(cfg["trigger_time"] + 2 - T)
    assert strain["H1"].shape == (model.settings["n_bins"],)
    assert 0.9 < wf < 1.0  # Tukey window factor for a 0.2 s roll-off
    res = subprocess.run(
        [str(Path(sys.executable).with_name("gwnpe")), "sample", "--model", str(out / "model.pt"), "--strain",
         *[f"{k}={v}" for k, v in files.items()], "--psd", *[f"{k}={v}" for k, v in tiny_products["psds"].items()],
         "-n", "500", "-o", str(tmp_path / "post.hdf5"), "--seed", "1", "--importance-sampling"],
        capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "importance sampling" in res.stdout
    r = bilby.core.result.read_in_result(str(tmp_path / "post.hdf5"))
    assert len(r.posterior) == 500 and r.sampling_time.total_seconds() > 0  # bilby reads it back as a timedelta
    # NPE+IS: weights (mean 1) and the exact likelihood of every sample, and a finite evidence
    assert r.posterior["weights"].mean() == pytest.approx(1.0)
    assert np.isfinite(r.posterior["log_likelihood"]).all() and np.isfinite(r.log_bayes_factor)
    assert r.log_evidence == pytest.approx(r.log_bayes_factor + r.log_noise_evidence)
    # wrong sampling rate is named
    bad = tmp_path / "bad.hdf5"
    with h5py.File(bad, "w") as f:
        ds = f.create_dataset("strain/Strain", data=rng.normal(size=int(16 * fs / 2)))
        ds.attrs["Xstart"], ds.attrs["Xspacing"] = t0, 2 / fs
    with pytest.raises(InferenceError, match="sampled at"):
        strain_from_time_domain(model, {"H1": bad, "L1": files["L1"]})
