"""GNPE: Gibbs sampling and density recovery against exact answers on a shift-equivariant toy, and a
GNPE model of the tiny config trained and sampled end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from gwnpe.inference.gnpe import density_recovery, gibbs
from gwnpe.inference.importance_sampling import importance_weights

# Toy: one "detector" whose arrival time is the parameter itself, theta ~ U(-1, 1), data x ~ N(theta, SIGMA).
# The exact GNPE conditional p(theta | x, t_hat) is the likelihood truncated to |theta - t_hat| <= KAPPA.
X, SIGMA, KAPPA, LO, HI = 0.3, 0.05, 0.04, -1.0, 1.0


def exact_conditional(seed):
    rng = np.random.default_rng(seed)

    def conditional(t_hat: torch.Tensor):
        c = t_hat[:, 0].numpy()
        lo, hi = np.maximum(c - KAPPA, LO), np.minimum(c + KAPPA, HI)
        a, b = (lo - X) / SIGMA, (hi - X) / SIGMA
        theta = stats.truncnorm.rvs(a, b, loc=X, scale=SIGMA, random_state=rng)
        log_q = stats.truncnorm.logpdf(theta, a, b, loc=X, scale=SIGMA)
        th = torch.as_tensor(theta)[:, None]
        return th, torch.as_tensor(log_q), th.clone()

    return conditional


def test_gibbs_with_exact_conditionals_recovers_the_posterior_from_a_bad_start():
    cond = exact_conditional(1)
    g = torch.Generator().manual_seed(0)
    init = lambda n: torch.full((n, 1), -0.5, dtype=torch.float64)  # noqa: E731  far from the posterior
    out = gibbs(init, lambda p: cond(p)[::2], 20000, KAPPA, 60, g)
    theta = out["theta"][:, 0].numpy()
    assert abs(theta.mean() - X) < 0.003 and abs(theta.std() / SIGMA - 1) < 0.03, (theta.mean(), theta.std())
    assert stats.kstest(theta, stats.norm(X, SIGMA).cdf).pvalue > 1e-3
    assert out["max_mean_shift"] < 0.1 and out["trace_mean"].shape == (60, 1)
    # too few iterations from the bad start: the trace shows the chains still moving
    short = gibbs(init, lambda p: cond(p)[::2], 20000, KAPPA, 4, g)
    assert short["max_mean_shift"] > 0.2 and abs(short["theta"][:, 0].numpy().mean() - X) > 0.1


def test_density_recovery_gives_the_exact_evidence_and_posterior():
    """(Run under torch.no_grad(), as sample_whitened and the posteriors stage call it: the fit of q(t_hat)
    must still train.)"""
    cond = exact_conditional(2)
    g = torch.Generator().manual_seed(3)
    chains = gibbs(lambda n: torch.full((n, 1), X, dtype=torch.float64), lambda p: cond(p)[::2], 8000, KAPPA, 30, g)
    with torch.no_grad():
        rec = density_recovery(chains["proxies"].numpy(), cond, lambda th: (th[:, 0] >= LO) & (th[:, 0] <= HI), KAPPA,
                               20000, seed=4)
    theta = rec["theta"][:, 0]
    log_l = stats.norm.logpdf(X, theta, SIGMA)  # normalised in x: the evidence is the prior mass near x
    log_prior = np.full_like(theta, -math.log(HI - LO))
    w = importance_weights(log_l, log_prior, rec["log_q"], int(round(len(theta) / rec["acceptance"])))
    z_exact = (stats.norm.cdf(HI, X, SIGMA) - stats.norm.cdf(LO, X, SIGMA)) / (HI - LO)
    assert abs(w["log_evidence"] - math.log(z_exact)) < 3 * w["log_evidence_err"] + 0.01, (w["log_evidence"], math.log(z_exact))
    assert w["efficiency"] > 0.5  # a good fit of q(t_hat) and exact conditionals: nearly exact weights
    mean = np.average(theta, weights=w["weights"])
    std = np.sqrt(np.average((theta - mean) ** 2, weights=w["weights"]))
    assert abs(mean - X) < 0.003 and abs(std / SIGMA - 1) < 0.03


def test_shift_phasor_moves_a_signal_earlier_exactly_at_any_shift():
    from gwnpe.nn.gnpe import shift_phasor

    f = 20.0 + np.arange(7937) / 8.0  # 20-1012 Hz at 1/8 Hz
    t0, s = 0.0734, np.array([[0.1234567, -0.0891011], [1e-4, 0.0]])
    h = np.exp(-2j * np.pi * f * t0)
    out = h * shift_phasor(f, torch.as_tensor(s), dtype=torch.complex128).numpy()
    np.testing.assert_allclose(out, np.exp(-2j * np.pi * f[None, None] * (t0 - s[..., None])), atol=1e-12)
    lo = shift_phasor(f, torch.as_tensor(s)).numpy()  # complex64: accurate to single precision at 1 kHz
    np.testing.assert_allclose(lo, np.exp(2j * np.pi * f[None, None] * s[..., None]), atol=3e-6)


@pytest.fixture(scope="module")
def gnpe_model(tiny_products, tmp_path_factory):
    from tests.conftest import train_tiny

    products = dict(tiny_products)
    products["config"] = cfg = __import__("copy").deepcopy(tiny_products["config"])
    cfg["model"]["gnpe"].update(enabled=True, kappa=0.002, iterations=8)
    out, hist, cfg = train_tiny(products, tmp_path_factory.mktemp("gnpe_model"), epochs=3)
    return out, hist, cfg


@pytest.mark.slow
def test_gnpe_batches_put_every_signal_within_kappa_of_zero_in_every_detector(tiny_products):
    from tests.conftest import simulator, training_data

    sim, dom, _ = simulator(tiny_products)
    sim.gnpe_kappa = kappa = 0.002
    from gwnpe.gw.detectors import DetectorNetwork
    sim.network64 = DetectorNetwork(tiny_products["config"]["detectors"], reference_time=tiny_products["config"]["trigger_time"],
                                    dtype=torch.float64)
    sim.noise = lambda shape, g: torch.zeros(shape, dtype=torch.complex128)  # noise-free
    data = training_data(tiny_products["training_set"])
    names = sorted(set(data.parameters) | set(sim.extrinsic_keys))
    theta, d_shift, rel, t, d = sim.batch(data, torch.arange(32), names, torch.Generator().manual_seed(0))
    # time-domain peaks (near the merger) of the whitened signals, unshifted and shifted by the proxies
    n = int(dom.duration * dom.sampling_frequency)
    k0 = int(round(dom.f_min * dom.duration))

    def peak(x):  # of the envelope (analytic signal), 8x oversampled
        m = 8 * n
        full = torch.zeros(*x.shape[:2], m, dtype=torch.complex128)
        full[..., k0:k0 + x.shape[-1]] = x
        lag = torch.argmax(torch.fft.ifft(full).abs(), dim=-1).numpy()
        return np.where(lag > m // 2, lag - m, lag) / (m / dom.duration)

    tol = 0.25 / dom.sampling_frequency
    offset = peak(d) - t.numpy()  # the peak's offset from the arrival time: the waveform's, a few ms
    assert np.ptp(t.numpy()) > 0.05 and np.all(np.abs(offset) < 0.02)
    # shifted, each detector's signal arrives within kappa of zero (the peak within kappa of its offset)
    assert np.all(np.abs(peak(d_shift) - offset) <= kappa + tol), peak(d_shift) - offset
    np.testing.assert_allclose(rel.numpy()[:, 0], (t[:, 1] - t[:, 0]).numpy(), atol=2 * kappa)


@pytest.mark.slow
def test_gnpe_model_trains_saves_and_samples_with_a_proposal_density(gnpe_model):
    from gwnpe.inference.importance_sampling import importance_sample
    from gwnpe.inference.sampling import model_priors, sample_posterior
    from gwnpe.products.model import load_model
    from tests.conftest import noise_event

    out, hist, cfg = gnpe_model
    assert all(np.isfinite([h["train_loss"] for h in hist])) and hist[-1]["validation_loss"] < hist[0]["validation_loss"]
    model = load_model(out / "model.pt")
    assert model.gnpe["kappa"] == 0.002 and model.init is not None and model.n_proxies == 1
    assert torch.all(model.proxy_std > 0) and torch.all(model.init.std > 0)
    strain, psds = noise_event(model, seed=5)
    start = cfg["trigger_time"] - 2.0
    a = sample_posterior(model, strain, psds, 400, start_time=start, seed=11)
    b = sample_posterior(model, strain, psds, 400, start_time=start, seed=11)
    np.testing.assert_array_equal(a["log_q"], b["log_q"])  # seeded: reproducible
    g = a["gnpe"]
    assert g["iterations"] == 8 and g["chains"] == 2000 and 0 < a["acceptance"] <= 1 and np.isfinite(g["max_mean_shift"])
    assert np.all(np.isfinite(a["log_q"]))
    priors = model_priors(model)
    names = model.parameter_names
    rel = {k: a["samples"][k] - (cfg["trigger_time"] if k == "geocent_time" else 0) for k in names}
    assert np.all(np.isfinite(priors.ln_prob(rel, axis=0)))
    res = importance_sample(model, strain, psds, start, a["samples"], a["log_q"], 400 / a["acceptance"],
                            cfg["waveform"]["approximant"], cfg["waveform"]["reference_frequency"])
    assert np.isfinite(res["log_evidence"]) and res["ess"] >= 1
    # the posteriors stage's path (sample_whitened, under no_grad) gives the same draws for the same seed
    from gwnpe.inference.sampling import sample_whitened, whitened_strain

    theta, log_q = sample_whitened(model, whitened_strain(model, strain, psds, start), 400, seed=11)
    np.testing.assert_array_equal(log_q[0], a["log_q"])


@pytest.mark.slow
def test_cli_samples_a_gnpe_model_with_importance_sampling_and_records_the_chains(gnpe_model, tiny_model, tmp_path, capsys):
    import bilby

    from gwnpe.cli import main
    from tests.conftest import noise_strain_file

    out, _, cfg = gnpe_model
    path = tmp_path / "strain.h5"
    noise_strain_file(out / "model.pt", cfg["trigger_time"], path, seed=8)
    post = tmp_path / "post.hdf5"
    assert main(["sample", "--model", str(out / "model.pt"), "--strain", str(path), "-n", "300", "--seed", "2",
                 "--gnpe-iterations", "4", "--importance-sampling", "-o", str(post)]) == 0
    r = bilby.core.result.read_in_result(str(post))
    meta = r.meta_data["gwnpe"]
    assert meta["gnpe"]["iterations"] == 4 and meta["gnpe"]["kappa"] == 0.002
    assert meta["importance_sampling"]["n"] == 300 and np.isfinite(r.log_evidence)
    # a plain model has no Gibbs iterations to set: exit status 2 and the reason
    assert main(["sample", "--model", str(tiny_model[0] / "model.pt"), "--strain", str(path), "--gnpe-iterations", "4",
                 "-o", str(tmp_path / "x.hdf5")]) == 2
    assert "was not trained with GNPE" in capsys.readouterr().err and not (tmp_path / "x.hdf5").exists()


def test_the_time_slot_maps_back_to_the_geocentre_time_exactly():
    from gwnpe.gw.detectors import DetectorNetwork
    from gwnpe.nn.gnpe import arrival_times, geocent_from_slot

    net = DetectorNetwork(["H1", "L1", "V1"], reference_time=1187008882.4, dtype=torch.float64)
    rng = np.random.default_rng(0)
    n = 1000
    ra, dec = torch.as_tensor(rng.uniform(0, 2 * np.pi, n)), torch.as_tensor(np.arcsin(rng.uniform(-1, 1, n)))
    tc = torch.as_tensor(rng.uniform(-0.1, 0.1, n))
    t = arrival_times(net, ra, dec, tc)
    proxy0 = t[:, 0] + torch.as_tensor(rng.uniform(-1e-3, 1e-3, n))
    back = geocent_from_slot(net, t[:, 0] - proxy0, ra, dec, proxy0)
    np.testing.assert_allclose(back.numpy(), tc.numpy(), rtol=0, atol=3e-8)  # Earth rotation in 21 ms: ~1e-8 s
    assert np.ptp((t[:, 0] - tc).numpy()) > 0.03  # the light travel time the slot leaves out: tens of ms


@pytest.mark.slow
def test_gnpe_with_phase_marginalised_infers_time_and_leaves_phase_to_importance_sampling(tiny_products, tmp_path_factory):
    """GNPE and ``model.marginalized: [phase]`` in one network: the network infers every parameter but
    the phase (geocent_time included, through its standardised slot), the Gibbs chains give absolute
    geocentre times inside the prior, and importance sampling weights with the phase-marginalised
    likelihood and draws a phase for every sample, the same with a dask client as serially."""
    import copy

    from gwnpe.inference.importance_sampling import importance_sample
    from gwnpe.inference.sampling import sample_posterior
    from gwnpe.products.model import load_model
    from gwnpe.stages.cluster import dask_client
    from tests.conftest import noise_event, train_tiny

    products = dict(tiny_products)
    products["config"] = cfg = copy.deepcopy(tiny_products["config"])
    cfg["model"]["gnpe"].update(enabled=True, kappa=0.002, iterations=4)
    cfg["model"]["marginalized"] = ["phase"]
    out, hist, cfg = train_tiny(products, tmp_path_factory.mktemp("gnpe_phase_model"), epochs=2)
    model = load_model(out / "model.pt")
    assert model.gnpe and model.settings["marginalized"] == ["phase"]
    assert "phase" not in model.parameter_names and "geocent_time" in model.parameter_names
    strain, psds = noise_event(model, seed=6)
    start = cfg["trigger_time"] - 2.0
    post = sample_posterior(model, strain, psds, 150, start_time=start, seed=3)
    assert "phase" not in post["samples"] and np.all(np.isfinite(post["log_q"]))
    rel = post["samples"]["geocent_time"] - cfg["trigger_time"]
    assert np.all(np.abs(rel) <= 0.1)
    args = (model, strain, psds, start, post["samples"], post["log_q"], 150 / post["acceptance"],
            cfg["waveform"]["approximant"], cfg["waveform"]["reference_frequency"])
    serial = importance_sample(*args, seed=4)
    rec = serial["reconstructed"]
    assert set(rec) == {"phase"} and len(rec["phase"]) == 150
    assert np.all((rec["phase"] >= 0) & (rec["phase"] <= 2 * np.pi)) and np.ptp(rec["phase"]) > 1.0
    assert np.isfinite(serial["log_evidence"]) and serial["ess"] >= 1
    with dask_client({"cluster": "local", "n_workers": 2}, 2) as client:
        parallel = importance_sample(*args, client=client, chunk_size=50, seed=4)
    np.testing.assert_array_equal(parallel["weights"], serial["weights"])
    np.testing.assert_array_equal(parallel["reconstructed"]["phase"], rec["phase"])


@pytest.mark.slow
def test_the_initialisation_network_trains_on_its_share_of_the_batch(gnpe_model):
    """model.gnpe.init_batch_fraction: in training mode the initialisation network's loss is that of the
    first ceil(fraction * B) samples; in evaluation mode (validation losses) of the whole batch."""
    from gwnpe.products.model import load_model

    out, _, _ = gnpe_model
    model = load_model(out / "model.pt")
    g = torch.Generator().manual_seed(0)
    B, n_det, n_bins = 10, len(model.settings["detectors"]), model.settings["n_bins"]
    theta = model.mean + model.std * torch.randn(B, len(model.parameter_names), generator=g)
    d = torch.complex(torch.randn(B, n_det, n_bins, generator=g), torch.randn(B, n_det, n_bins, generator=g))
    d_raw = torch.complex(torch.randn(B, n_det, n_bins, generator=g), torch.randn(B, n_det, n_bins, generator=g))
    proxies, arrival = 0.01 * torch.randn(B, n_det - 1, generator=g), 0.01 * torch.randn(B, n_det, generator=g)
    main = -model.flow(model.context(d, proxies)).log_prob(model.standardise(theta)).mean()
    with torch.no_grad():
        model.settings["model"]["gnpe"]["init_batch_fraction"] = 0.25
        model.train()
        part = model.loss(theta, d, proxies, arrival, d_raw)
        np.testing.assert_allclose(float(part), float(main + model.init.loss(arrival[:3], d_raw[:3])), rtol=1e-6)
        model.eval()
        whole = model.loss(theta, d, proxies, arrival, d_raw)
        np.testing.assert_allclose(float(whole), float(main + model.init.loss(arrival, d_raw)), rtol=1e-6)
        assert abs(float(part) - float(whole)) > 1e-6
