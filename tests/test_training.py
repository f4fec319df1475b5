"""Training stage and inference: on-the-fly data physics, learning, checkpoints that resume, sampling."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gwnpe.data import Simulator, TrainingData
from gwnpe.domain import build_domain
from gwnpe.errors import GwnpeError
from gwnpe.inference import InferenceError, sample_posterior, save_result
from gwnpe.nn.model import load_model
from .conftest import noise_event
from gwnpe.priors import load_priors
from gwnpe.psd import psd_on_domain
from gwnpe.svd import load_basis
from gwnpe.training import run_train_stage, train_settings
from gwnpe.training.trainer import evaluate


def _simulator(p, dtype=torch.float64):
    cfg = p["config"]
    dom = build_domain(cfg)
    basis = load_basis(p["basis"])
    asds = np.sqrt([psd_on_domain(p["psds"][i], dom) for i in cfg["detectors"]])
    sim = Simulator(basis.V, basis.asd_reference, asds, dom.frequencies, cfg["detectors"], cfg["trigger_time"],
                    load_priors(cfg["priors"]), cfg["waveform"]["reference_distance"], dtype=dtype)
    return sim, dom, asds


def test_on_the_fly_signal_has_bilby_optimal_snr(tiny_products):
    """The whitened signal's optimal SNR equals bilby's for the same parameters, PSD and detectors (< 1%)."""
    import bilby

    from gwnpe.training_set import load_training_set
    from gwnpe.waveforms import build_waveform_generator

    p = tiny_products
    cfg = p["config"]
    sim, dom, asds = _simulator(p)
    data = TrainingData(p["training_set"])
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
    sim, dom, _ = _simulator(tiny_products, dtype=torch.float32)
    n = sim.noise((2000, 2, len(dom)), torch.Generator().manual_seed(0))
    assert n.dtype == torch.complex64
    for part in (n.real, n.imag):
        assert float(part.var()) == pytest.approx(1.0, abs=0.01)
        assert abs(float(part.mean())) < 0.01
    # independent bins: neighbouring-bin correlation ~ 0
    corr = float((n.real[..., 1:] * n.real[..., :-1]).mean())
    assert abs(corr) < 0.01


def _train(p, tmp, epochs, on_epoch_end=None, name="m", **training):
    cfg = copy.deepcopy(p["config"])
    cfg["training"].update(epochs=epochs, **training)
    out = tmp / name
    out.mkdir(exist_ok=True)
    hist = run_train_stage(train_settings(cfg), p["training_set"], p["basis"], p["psds"], out / "model.pt",
                           out / "history.csv", out / "loss.png", out / "checkpoint.pt", threads=2,
                           on_epoch_end=on_epoch_end, out_throughput=out / "throughput.csv")
    return out, hist, cfg


@pytest.fixture(scope="module")
def trained(tiny_products, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    return _train(tiny_products, tmp, epochs=6, name="full")


def test_loss_decreases_and_outputs_are_written(trained):
    out, hist, _ = trained
    assert [r["epoch"] for r in hist] == list(range(1, 7))
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 0.2
    assert hist[-1]["validation_loss"] < hist[0]["validation_loss"]
    lines = (out / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,validation_loss,learning_rate"
    assert len(lines) == 7
    rows = (out / "throughput.csv").read_text().splitlines()
    assert rows[0] == "epoch,wall_time,samples_per_second" and len(rows) == 7 and float(rows[1].split(",")[2]) > 0
    assert (out / "loss.png").stat().st_size > 5000
    assert not (out / "checkpoint.pt").exists()  # removed once the model is written


def test_untrained_model_is_visibly_worse(trained, tiny_products, tmp_path):
    out, _, _ = trained
    out0, hist0, cfg = _train(tiny_products, tmp_path, epochs=0, name="zero")
    assert hist0 == []
    sim, _, _ = _simulator(tiny_products, dtype=torch.float32)
    data = TrainingData(tiny_products["training_set"])
    idx = torch.arange(360, 400)
    m_trained, m_zero = load_model(out / "model.pt"), load_model(out0 / "model.pt")
    names = m_trained.parameter_names
    v1 = evaluate(m_trained, sim, data, idx, names, 64, cfg["seed"])
    v0 = evaluate(m_zero, sim, data, idx, names, 64, cfg["seed"])
    assert v0 > v1 + 0.2


def test_model_round_trips_through_save_and_load(trained, tiny_products):
    out, _, _ = trained
    m1 = load_model(out / "model.pt")
    m2 = load_model(out / "model.pt")
    sim, dom, _ = _simulator(tiny_products, dtype=torch.float32)
    theta, d = sim.batch(TrainingData(tiny_products["training_set"]), torch.arange(8), m1.parameter_names,
                         torch.Generator().manual_seed(3))
    with torch.no_grad():
        np.testing.assert_array_equal(m1.log_prob(theta, d).numpy(), m2.log_prob(theta, d).numpy())
    assert m1.provenance["stage"] == "train"
    assert m1.provenance["inputs"]["training_set"]["provenance"]["stage"] == "training_set"


def test_resume_after_kill_gives_identical_weights(tiny_products, tmp_path):
    """Killed after epoch 2 of 4, rerun: continuous history and (CPU) the uninterrupted run's weights."""

    class Killed(Exception):
        pass

    def kill_after_2(epoch, history):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        _train(tiny_products, tmp_path, epochs=4, on_epoch_end=kill_after_2, name="resumed")
    assert (tmp_path / "resumed/checkpoint.pt").exists()
    assert not (tmp_path / "resumed/model.pt").exists()
    _, hist, _ = _train(tiny_products, tmp_path, epochs=4, name="resumed")
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4]
    _, hist_ref, _ = _train(tiny_products, tmp_path, epochs=4, name="reference")
    a = torch.load(tmp_path / "resumed/model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "reference/model.pt", weights_only=False)["state_dict"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["train_loss"] for r in hist] == [r["train_loss"] for r in hist_ref]


def test_checkpoint_of_other_settings_is_not_resumed(tiny_products, tmp_path):
    def stop(epoch, history):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(tiny_products, tmp_path, epochs=3, on_epoch_end=stop, name="x")
    _, hist, _ = _train(tiny_products, tmp_path, epochs=3, name="x", learning_rate=5e-4)
    assert [r["epoch"] for r in hist] == [1, 2, 3]


def test_cuda_requested_without_gpu_is_a_clear_error(tiny_products, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(GwnpeError, match="no CUDA GPU"):
        _train(tiny_products, tmp_path, epochs=1, device="cuda")


def _event(model, p, seed=0):
    return noise_event(model, seed)


def test_sampling_shapes_units_and_prior_bounds(trained, tiny_products, tmp_path):
    import bilby

    out, _, cfg = trained
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
    save_result(path, model, s, res["log_q"], res["sampling_time"], injection_parameters={"chirp_mass": 30.0})
    r = bilby.core.result.read_in_result(str(path))
    assert len(r.posterior) == 3000 and "mass_1" in r.posterior and r.injection_parameters["chirp_mass"] == 30.0
    assert r.sampler == "gwnpe"


def test_inference_bad_inputs(trained, tiny_products):
    out, _, _ = trained
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


def test_time_domain_strain_files_through_the_cli(trained, tiny_products, tmp_path):
    """GWOSC-format time-domain files of the segment -> windowed FFT -> samples, via `gwnpe sample`."""
    import subprocess
    import sys
    from pathlib import Path

    import bilby
    import h5py

    from gwnpe.inference import strain_from_time_domain

    out, _, cfg = trained
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


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_fast_signal_path_equals_the_reference_projection(tiny_products, dtype, rtol):
    """Simulator.signal (coefficient-space combination + phasor tables) = DetectorNetwork.project on the expanded waveform."""
    sim, dom, _ = _simulator(tiny_products, dtype=dtype)
    data = TrainingData(tiny_products["training_set"])
    idx = torch.arange(16)
    ext = sim.draw_extrinsic(16, torch.Generator().manual_seed(2))
    fast = sim.signal(data.h_plus[idx], data.h_cross[idx], ext)
    ref64, _, _ = _simulator(tiny_products, dtype=torch.float64)
    hp = data.h_plus[idx].to(torch.complex128) @ ref64.VH
    hc = data.h_cross[idx].to(torch.complex128) @ ref64.VH
    slow = ref64.network.project(hp, hc, ref64.frequencies, ext["ra"], ext["dec"], ext["psi"], ext["geocent_time"])
    slow = slow * ref64.ratio[None] * (ref64.reference_distance / ext["luminosity_distance"])[:, None, None]
    err = (fast.to(torch.complex128) - slow).abs().max() / slow.abs().max()
    assert float(err) < rtol
