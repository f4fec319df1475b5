"""Noise conditioning: per-sample ASDs in the simulator, the ASD channel of the embedding, the train
stage's two-stage schedule over an ASD dataset with a held-out part."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gwnpe.nn.model import build_model
from gwnpe.nn.simulator import Simulator

from tests.conftest import simulator, train_model, training_data


def _bank(asds: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
    """(n_det, 3, n_bins): the ASDs, 1.5x louder, and tilted (x (f / 100 Hz)^0.4)."""
    tilt = (frequencies / 100.0) ** 0.4
    return np.stack([np.stack([a, 1.5 * a, a * tilt]) for a in asds])


def _conditioned_sim(p, dtype=torch.float64):
    from gwnpe.gw.priors import load_priors
    from gwnpe.products.basis import load_basis

    sim, dom, asds = simulator(p, dtype=dtype)
    cfg = p["config"]
    basis = load_basis(p["basis"])
    bank = _bank(asds, dom.frequencies)
    csim = Simulator(basis.V, basis.asd_reference, asds, dom.frequencies, cfg["detectors"], cfg["trigger_time"],
                     load_priors(cfg["priors"]), cfg["waveform"]["reference_distance"], dtype=dtype, asd_bank=bank)
    return sim, csim, dom, asds, bank


def test_each_sample_is_whitened_by_its_own_drawn_asd(tiny_products):
    """The signal whitened by a drawn ASD, times that ASD, is the strain the fixed-ASD path whitens:
    only the whitening changes. Draws are per sample and detector from the bank; noise stays white."""
    sim, csim, dom, asds, bank = _conditioned_sim(tiny_products)
    data = training_data(tiny_products["training_set"])
    idx = torch.arange(64)
    ext = sim.draw_extrinsic(64, torch.Generator().manual_seed(2))
    asd = csim.draw_asd(64, torch.Generator().manual_seed(3))
    assert asd.shape == (64, 2, len(dom))
    which = [[int(np.argmin(np.abs(bank[j] - asd[b, j].numpy()).sum(axis=1))) for j in range(2)] for b in range(64)]
    for b in range(64):
        for j in range(2):
            np.testing.assert_allclose(asd[b, j].numpy(), bank[j, which[b][j]], rtol=1e-12)
    assert {w[0] for w in which} == {0, 1, 2} and any(w[0] != w[1] for w in which)  # per detector, independently
    s_fixed = sim.signal(data.h_plus[idx], data.h_cross[idx], ext).numpy()
    s_cond = csim.signal(data.h_plus[idx], data.h_cross[idx], ext, asd).numpy()
    np.testing.assert_allclose(s_cond * asd.numpy(), s_fixed * asds[None], rtol=1e-9, atol=1e-12 * np.abs(s_fixed * asds).max())
    # a 1.5x louder ASD gives a 1.5x quieter whitened signal
    loud = [b for b in range(64) if which[b][0] == 1]
    np.testing.assert_allclose(np.abs(s_cond[loud, 0]) * 1.5, np.abs(s_fixed[loud, 0]), rtol=1e-9)
    x = csim.loss_inputs(data, idx, ["chirp_mass"], torch.Generator().manual_seed(0))
    noise = (x["d"] - csim.signal(data.h_plus[idx], data.h_cross[idx], csim.draw_extrinsic(64, torch.Generator().manual_seed(0)),
                                  x["asd"])).numpy()
    assert np.var(noise.real) == pytest.approx(1.0, abs=0.02) and np.var(noise.imag) == pytest.approx(1.0, abs=0.02)


def test_without_draws_the_simulator_is_the_fixed_asd_one(tiny_products):
    """With ``draw_asds`` off (the first stage of the schedule) a bank-holding simulator gives the fixed
    simulator's batches bit for bit, and its ASDs are the reference ones."""
    sim, csim, dom, asds, _ = _conditioned_sim(tiny_products)
    data = training_data(tiny_products["training_set"])
    csim.draw_asds = False
    a = sim.loss_inputs(data, torch.arange(16), ["chirp_mass", "ra"], torch.Generator().manual_seed(5))
    b = csim.loss_inputs(data, torch.arange(16), ["chirp_mass", "ra"], torch.Generator().manual_seed(5))
    assert torch.equal(a["d"], b["d"]) and torch.equal(a["theta"], b["theta"])
    np.testing.assert_array_equal(b["asd"].numpy(), np.broadcast_to(asds, (16, *asds.shape)))


def _model_settings(p, conditioned: bool) -> dict:
    cfg = p["config"]
    model = copy.deepcopy(cfg["model"])
    model["noise_conditioning"] = {"enabled": conditioned, "fixed_asd_epochs": 0, "held_out_fraction": 0.1}
    from gwnpe.gw.domain import build_domain
    from gwnpe.products.basis import load_basis

    return {"model": model, "parameters": ["chirp_mass", "mass_ratio"], "detectors": cfg["detectors"],
            "n_bins": len(build_domain(cfg)), "basis_size": load_basis(p["basis"]).size}


def test_asd_channel_is_zero_at_the_reference_and_read_elsewhere(tiny_products):
    """The ASD channel is log(ASD / reference): a new network ignores the ASD (its weights start at
    zero); with weights, the reference ASD gives the unconditioned answer and other ASDs change it."""
    _, csim, dom, asds, bank = _conditioned_sim(tiny_products, dtype=torch.float32)
    torch.manual_seed(0)
    m = build_model(_model_settings(tiny_products, True), asd_reference=asds)
    assert m.noise_conditioned and not build_model(_model_settings(tiny_products, False)).noise_conditioned
    data = training_data(tiny_products["training_set"])
    x = csim.loss_inputs(data, torch.arange(8), m.parameter_names, torch.Generator().manual_seed(1))
    loud = torch.as_tensor(bank[:, 1], dtype=torch.float32)
    with torch.no_grad():
        lp_none = m.log_prob(x["theta"], x["d"])
        np.testing.assert_array_equal(m.log_prob(x["theta"], x["d"], asd=loud).numpy(), lp_none.numpy())
        m.embedding.projection.asd_weight.normal_(0, 0.05)
        lp_ref = m.log_prob(x["theta"], x["d"], asd=torch.as_tensor(asds, dtype=torch.float32))
        np.testing.assert_allclose(lp_ref.numpy(), m.log_prob(x["theta"], x["d"]).numpy(), rtol=1e-5, atol=1e-5)
        assert np.abs(m.log_prob(x["theta"], x["d"], asd=loud).numpy() - lp_ref.numpy()).max() > 1e-2
    with pytest.raises(Exception, match=r"ASDs of shape \(1, 2, 3\)"):
        m.context(x["d"], asd=torch.ones(1, 2, 3))


@pytest.fixture(scope="module")
def asd_dataset(tiny_products, tmp_path_factory):
    from gwnpe.stages.asd_dataset import run_asd_dataset_stage

    cfg = copy.deepcopy(tiny_products["config"])
    cfg["asd_dataset"].update(size=10, segments=4)
    path = tmp_path_factory.mktemp("asd_dataset") / "asd_dataset.h5"
    run_asd_dataset_stage(cfg, out_path=path)
    return path


@pytest.fixture(scope="module")
def conditioned(tiny_products, asd_dataset, tmp_path_factory):
    """The tiny config, noise-conditioned (ASD dataset of 10, the last 2 held out), trained 3 epochs, the
    first on the reference ASDs: (folder, config, max |ASD weight| after each epoch)."""
    cfg = copy.deepcopy(tiny_products["config"])
    cfg["training"]["epochs"] = 3
    cfg["model"]["noise_conditioning"] = {"enabled": True, "fixed_asd_epochs": 1, "held_out_fraction": 0.2}
    cfg["asd_dataset"].update(size=10, segments=4)
    out = tmp_path_factory.mktemp("conditioned")
    weights = {}

    def after(epoch, history):
        ck = torch.load(out / "checkpoint.pt", weights_only=False)
        weights[epoch] = ck["model"]["embedding.projection.asd_weight"].abs().max().item()

    hist = train_model(cfg, out, training_set=tiny_products["training_set"], basis=tiny_products["basis"],
                       psds=tiny_products["psds"], on_epoch_end=after, asd_dataset=asd_dataset)
    assert len(hist) == 3
    return out, cfg, weights


@pytest.mark.slow
def test_noise_conditioned_training_schedule_and_held_out_part(conditioned, asd_dataset):
    """Two-stage schedule: after the fixed-ASD epoch the ASD weights are still zero (only the reference
    ASD was seen), after the dataset epochs they are not; the held-out ASDs (last 20%) are never drawn:
    the stored training range is that of the first 8 ASDs. The model samples given an event's ASD."""
    import gwnpe.stages.train as train_stage
    from gwnpe.gw.domain import build_domain, window_factor
    from gwnpe.inference.sampling import sample_whitened
    from gwnpe.products.asd_dataset import read_asd_dataset
    from gwnpe.products.model import load_model
    from gwnpe.provenance import input_provenance

    out, cfg, weights = conditioned
    assert weights[1] == 0.0 and weights[3] > 0.0
    m = load_model(out / "model.pt")
    assert m.noise_conditioned
    ds = read_asd_dataset(asd_dataset)
    w = window_factor(cfg["domain"])
    for j, ifo in enumerate(cfg["detectors"]):
        train_part = ds.asds[ifo][:8].astype(float) * np.sqrt(w)
        np.testing.assert_allclose(m.extra["asd_range"][0][j], np.quantile(train_part, 0.005, axis=0), rtol=1e-5)
        np.testing.assert_allclose(m.extra["asd_range"][1][j], np.quantile(train_part, 0.995, axis=0), rtol=1e-5)
    assert m.extra["asd_dataset_training_size"] == 8
    bank = train_stage.training_asds(asd_dataset, cfg, build_domain(cfg))
    assert bank.shape == (2, 8, len(build_domain(cfg)))
    assert input_provenance(m.provenance, "asd_dataset")["stage"] == "asd_dataset"
    d = np.zeros((1, 2, len(build_domain(cfg))), complex)
    a = np.stack([ds.asds[ifo][9] for ifo in cfg["detectors"]]) * np.sqrt(w)
    th1, lq1 = sample_whitened(m, d, 50, seed=1, asd=a)
    th2, lq2 = sample_whitened(m, d, 50, seed=1)
    assert th1.shape == (1, 50, len(m.parameter_names)) and not np.allclose(lq1, lq2)


@pytest.mark.slow
def test_held_out_injections_are_coloured_by_unseen_asds(conditioned, asd_dataset, tiny_products, tmp_path):
    """injections.asd_source held_out: each injection and detector draws one of the held-out ASDs (the
    last 2 of 10), its noise has that PSD (matched-filter minus optimal SNR ~ N(0, 1) when whitened by
    the stored per-injection PSD), and the posteriors stage gives the network each injection's ASDs."""
    from gwnpe.gw.domain import analysis_psd
    from gwnpe.inference.sampling import sample_whitened, whitened_strain, whitening_asds
    from gwnpe.products.asd_dataset import read_asd_dataset
    from gwnpe.products.injections import load_injections
    from gwnpe.products.model import load_model
    from gwnpe.stages.injections import run_injections_stage
    from gwnpe.stages.posteriors import run_posteriors_stage
    from gwnpe.stages.settings import stage_settings

    out, cfg, _ = conditioned
    cfg = copy.deepcopy(cfg)
    cfg["injections"].update(count=300, asd_source="held_out", n_samples=40)
    run_injections_stage(stage_settings(cfg, "injections"), psd_paths=tiny_products["psds"], out_path=tmp_path / "inj.h5",
                         asd_dataset_path=asd_dataset)
    inj = load_injections(tmp_path / "inj.h5")
    ds = read_asd_dataset(asd_dataset)
    for ifo in cfg["detectors"]:
        assert set(inj.asd_index[ifo].tolist()) == {8, 9}
        assert inj.psd[ifo].shape == (300, len(inj.frequencies))
        np.testing.assert_allclose(inj.psd_of(7)[ifo], analysis_psd(ds.asds[ifo][inj.asd_index[ifo][7]].astype(float) ** 2,
                                                                    cfg["domain"]), rtol=1e-12)
        resid = inj.snr[f"matched_filter_{ifo}"] - inj.snr[f"optimal_{ifo}"]
        assert abs(resid.mean()) < 0.2 and 0.85 < resid.std() < 1.15
    assert any(inj.asd_index["H1"][i] != inj.asd_index["L1"][i] for i in range(300))
    assert inj.event(7)["psd"]["L1"].shape == (len(inj.frequencies),)
    paths = [tmp_path / f"post_{i}.hdf5" for i in range(len(inj))]
    run_posteriors_stage(stage_settings(cfg, "posteriors"), model_path=out / "model.pt", injections_path=tmp_path / "inj.h5",
                         out_paths=paths)
    from bilby.core.result import read_in_result

    m = load_model(out / "model.pt")
    d = np.stack([whitened_strain(m, {k: v[i] for k, v in inj.strain.items()}, inj.psd_of(i), inj.start_time)
                  for i in range(len(inj))])
    own = np.stack([whitening_asds(m, inj.psd_of(i)) for i in range(len(inj))])
    kw = dict(seed=cfg["seed"], batch_events=cfg["injections"]["batch_events"])
    th_own, _ = sample_whitened(m, d, 40, asd=own, **kw)
    th_ref, _ = sample_whitened(m, d, 40, **kw)
    i_mc = m.parameter_names.index("chirp_mass")
    got = read_in_result(paths[7]).posterior["chirp_mass"].to_numpy()
    np.testing.assert_allclose(got, th_own[7, :, i_mc], rtol=1e-6)
    assert not np.allclose(got, th_ref[7, :, i_mc], rtol=1e-3)
    from gwnpe.stages.pp import run_pp_stage

    pp = run_pp_stage(paths, out_json=tmp_path / "pp.json", out_plot=tmp_path / "pp.png")  # the held-out PP-test
    assert pp["n_injections"] == 300 and set(pp["pvalues"]) == set(m.parameter_names)


def test_gnpe_network_is_noise_conditioned_in_both_of_its_networks(tiny_products):
    """With GNPE, the main and the initialisation network both read the ASDs: one training step on
    drawn ASDs moves the ASD weights of both, and the shifted strain is whitened by the same ASDs."""
    from gwnpe.gw.detectors import DetectorNetwork

    _, csim, dom, asds, _ = _conditioned_sim(tiny_products, dtype=torch.float32)
    cfg = tiny_products["config"]
    csim.gnpe_kappa = 0.002
    csim.network64 = DetectorNetwork(cfg["detectors"], reference_time=cfg["trigger_time"], dtype=torch.float64)
    settings = _model_settings(tiny_products, True)
    settings["model"]["gnpe"] = {**cfg["model"]["gnpe"], "enabled": True, "kappa": 0.002}
    data = training_data(tiny_products["training_set"])
    names = ["chirp_mass", "mass_ratio", "ra", "dec", "geocent_time"]
    settings["parameters"] = names
    torch.manual_seed(0)
    m = build_model(settings, asd_reference=asds)
    assert m.noise_conditioned and m.init.noise_conditioned
    x = csim.loss_inputs(data, torch.arange(32), names, torch.Generator().manual_seed(4))
    assert set(x) == {"theta", "d", "proxies", "arrival", "d_raw", "asd"}
    np.testing.assert_allclose(x["d"].abs().numpy(), x["d_raw"].abs().numpy(), rtol=1e-4, atol=1e-5)  # a phase shift only
    loss = m.loss(**x)
    loss.backward()
    assert torch.isfinite(loss)
    assert m.embedding.projection.asd_weight.grad.abs().max() > 0
    assert m.init.embedding.projection.asd_weight.grad.abs().max() > 0


@pytest.mark.slow
def test_refining_a_noise_conditioned_network_simulates_with_the_events_asds(conditioned, monkeypatch):
    """Per-event refinement of a noise-conditioned network whitens its simulations by the event's ASDs
    and gives them to the network (a fixed-ASD network keeps its own); the refined copy stays
    conditioned and the amortised one is untouched."""
    import gwnpe.inference.refinement as refinement
    from gwnpe.products.model import load_model

    out, cfg, _ = conditioned
    m = load_model(out / "model.pt")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    event = 1.3 * np.asarray(m.extra["asds"], float)
    seen = []
    real = refinement.Simulator

    def spy(*args, **kw):
        sim = real(*args, **kw)
        seen.append(sim.asds.double().numpy())
        return sim

    monkeypatch.setattr(refinement, "Simulator", spy)
    bounds = {"chirp_mass": (20.0, 30.0)}
    refined, info = refinement.refine_model(m, bounds, {"waveforms": 64, "epochs": 1, "batch_size": 32}, seed=1, asds=event)
    np.testing.assert_allclose(seen[-1], event, rtol=1e-6)
    assert refined.noise_conditioned and np.isfinite(info["validation_loss"]["after"])
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())


@pytest.mark.slow
def test_out_of_training_warning_of_a_noise_conditioned_network_uses_the_range_of_its_asd_set(conditioned):
    """An event ASD inside the span of the training ASDs (0.5-99.5% per bin) raises no flag; one 3x above
    the span's top is flagged in every octave of both detectors, with the ratio to the nearest end."""
    from gwnpe.inference.sampling import asd_outside_training
    from gwnpe.products.model import load_model

    m = load_model(conditioned[0] / "model.pt")
    lo, hi = (np.asarray(a, float) for a in m.extra["asd_range"])
    ifos = m.settings["detectors"]
    inside = {ifo: (0.5 * (lo[j] + hi[j])) ** 2 for j, ifo in enumerate(ifos)}
    assert asd_outside_training(m, inside) == []
    loud = {ifo: (3.0 * hi[j]) ** 2 for j, ifo in enumerate(ifos)}
    flags = asd_outside_training(m, loud)
    assert {f["detector"] for f in flags} == set(ifos) and all(f["ratio"] == pytest.approx(3.0, rel=1e-3) for f in flags)
