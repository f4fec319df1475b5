"""Per-event refinement: the truncated prior, the truncation box, the check that a box cuts posterior
mass, and a refinement of the tiny model on one injection."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gwnpe.errors import PriorError
from gwnpe.gw.priors import draw, load_priors, truncate_priors
from gwnpe.inference.refinement import posterior_bounds, refinement_settings, truncation_check


@pytest.fixture(scope="module")
def priors():
    return load_priors("config/priors/default.prior")


def test_truncated_prior_is_the_renormalised_restriction(priors):
    """Draws lie in the box and follow the base density renormalised there (KS against the exact CDF);
    the density integrates to one; unknown or empty truncations are refused."""
    t = truncate_priors(priors, {"luminosity_distance": (500.0, 900.0), "dec": (-0.3, 0.5)})
    s = draw(t, ["luminosity_distance", "dec", "chirp_mass"], 20000, np.random.default_rng(1))
    assert s["luminosity_distance"].min() >= 500 and s["luminosity_distance"].max() <= 900
    exact = lambda x: (x**3 - 500.0**3) / (900.0**3 - 500.0**3)  # d^2 prior  # noqa: E731
    assert stats.kstest(s["luminosity_distance"], exact).pvalue > 0.01
    x = np.linspace(-0.3, 0.5, 20001)
    assert abs(np.trapezoid(t["dec"].prob(x), x) - 1) < 1e-6
    assert t["dec"].prob(np.array([0.6]))[0] == 0 and np.isneginf(t["dec"].ln_prob(np.array([-0.4]))[0])
    assert s["chirp_mass"].min() < 21 and s["chirp_mass"].max() > 39  # untouched
    with pytest.raises(PriorError, match="not a sampled parameter"):
        truncate_priors(priors, {"a_1": (0.0, 0.1)})
    with pytest.raises(PriorError, match="keeps no prior mass"):
        truncate_priors(priors, {"luminosity_distance": (3000.0, 4000.0)})


def test_box_from_samples_skips_periodic_parameters_and_clips_to_the_prior(priors):
    rng = np.random.default_rng(0)
    s = {"chirp_mass": rng.normal(30, 0.5, 5000), "luminosity_distance": rng.normal(150, 40, 5000),
         "phase": rng.uniform(0, 6, 5000), "mass_ratio": rng.uniform(0.25, 1, 5000)}
    box = posterior_bounds(s, priors, list(s), quantile=0.001, margin=0.5)
    lo, hi = np.quantile(s["chirp_mass"], [0.001, 0.999])
    assert box["chirp_mass"] == pytest.approx((lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo)))
    assert box["luminosity_distance"][0] == 100.0  # clipped at the prior's minimum
    assert "phase" not in box  # periodic: never truncated
    assert "mass_ratio" not in box  # the box would be the whole prior range


def test_a_box_that_cuts_the_posterior_is_detected(priors):
    """A Gaussian posterior well inside the box passes; the same posterior with the box's edge through its
    centre (a refined network puts no mass beyond the edge, so it piles up there) is reported, naming the edge."""
    rng = np.random.default_rng(2)
    x = rng.normal(30.0, 0.2, 20000)
    w = np.ones_like(x)
    ok = truncation_check({"chirp_mass": x}, w, {"chirp_mass": (28.5, 31.5)}, priors)
    assert ok["ok"] and ok["edge_mass"]["chirp_mass lower"] < 1e-3 and ok["edge_mass"]["chirp_mass upper"] < 1e-3
    cut = x[x > 30.0]
    bad = truncation_check({"chirp_mass": cut}, np.ones_like(cut), {"chirp_mass": (30.0, 31.5)}, priors)
    assert not bad["ok"] and bad["cut"] == ["chirp_mass lower"] and bad["edge_mass"]["chirp_mass lower"] > 0.1
    # an edge at the prior's own boundary is not a cut
    edge = truncation_check({"chirp_mass": np.full(10, 20.01)}, np.ones(10), {"chirp_mass": (20.0, 25.0)}, priors)
    assert edge["ok"] and "chirp_mass lower" not in edge["edge_mass"]


def test_unknown_refinement_settings_are_refused():
    from gwnpe.errors import InferenceError

    assert refinement_settings({"epochs": 2})["epochs"] == 2
    with pytest.raises(InferenceError, match="unknown refinement setting"):
        refinement_settings({"epoch": 2})


@pytest.mark.slow
def test_refinement_of_the_tiny_model_learns_the_truncated_prior_and_leaves_the_amortised_one_alone(tiny_model,
                                                                                                   tiny_products):
    """Refining the tiny network for one injection on a box cut from its amortised posterior: the refined
    network's samples for that event lie in the box far more often than the amortised network's (it has
    learned the truncated prior), its truncated-prior validation loss falls, the weights use the full
    prior (finite evidence), the result records the efficiency before and after and the truncation
    check, and the amortised network's weights are untouched.

    (Whether refinement *raises the efficiency* is measured in benchmarks/bench_refine.py on the default
    problem, not asserted here: the tiny network's posteriors span most of the prior.)"""
    import copy

    import torch

    from gwnpe.errors import InjectionError
    from gwnpe.inference.refinement import importance_sample_refined
    from gwnpe.inference.sampling import sample_posterior
    from gwnpe.products.injections import load_event
    from gwnpe.products.model import load_model
    from gwnpe.stages.injections import run_injections_stage
    from gwnpe.stages.settings import stage_settings

    out, _, cfg = tiny_model
    model = load_model(out / "model.pt")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert "basis_V" in model.extra  # the train stage stores the basis refinement simulates with
    icfg = copy.deepcopy(cfg)
    icfg["injections"]["count"] = 12
    path = out.parent / "refine_injections.h5"
    run_injections_stage(stage_settings(icfg, "injections"), psd_paths=tiny_products["psds"], out_path=path)
    events = [load_event(path, i, InjectionError) for i in range(12)]
    inj = min(events, key=lambda e: abs(e["snr"]["network_optimal"] - 15.0))
    kw = dict(target_ess=1e9, max_samples=1000, batch_size=1000, seed=11)
    # a tight box (central 80% of the amortised samples, 10% margin): truncation that matters
    settings = {"waveforms": 1500, "epochs": 6, "batch_size": 256, "learning_rate": 1e-3, "max_seconds": 600,
                "quantile": 0.1, "margin": 0.1}
    with pytest.warns(Warning):
        res, refined = importance_sample_refined(model, inj["strain"], inj["psd"], inj["start_time"], "IMRPhenomD",
                                                 20.0, refine="always", settings=settings, **kw)
    r = res["refinement"]
    assert r["refined"] and refined is not None and len(r["bounds"]) >= 3
    assert {"efficiency_before", "efficiency_after", "time", "truncation", "info"} <= set(r)
    assert r["info"]["validation_loss"]["after"] < r["info"]["validation_loss"]["before"]
    assert np.isfinite(res["log_evidence"])

    def inside(post):
        s = dict(post["samples"])
        s["geocent_time"] = s["geocent_time"] - cfg["trigger_time"]
        ok = np.ones(len(post["log_q"]), bool)
        for k, (lo, hi) in r["bounds"].items():
            ok &= (s[k] >= lo) & (s[k] <= hi)
        return ok.mean()

    amortised = inside(sample_posterior(model, inj["strain"], inj["psd"], 2000, start_time=inj["start_time"], seed=3))
    refined_in = inside(sample_posterior(refined, inj["strain"], inj["psd"], 2000, start_time=inj["start_time"], seed=3))
    assert refined_in > amortised + 0.2, (amortised, refined_in)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert refined.settings["refinement"]["bounds"] == r["bounds"]


@pytest.mark.slow
def test_cli_refine_writes_the_refined_network_and_its_summary(tiny_model, tmp_path, capsys):
    """``gwnpe sample --target-ess ... --refine always``: the Result's importance-sampling meta data holds the
    refinement (efficiency before and after, time, box, truncation check), the refined network is written
    beside the result and loads; ``--refine`` without ``--target-ess`` is refused before any sampling."""
    import bilby

    from gwnpe.cli import main
    from gwnpe.products.model import load_model
    from tests.conftest import noise_strain_file

    out, _, cfg = tiny_model
    path = tmp_path / "strain.h5"
    noise_strain_file(out / "model.pt", cfg["trigger_time"], path, seed=5)
    post = tmp_path / "post.hdf5"
    assert main(["sample", "--model", str(out / "model.pt"), "--strain", str(path), "-n", "200", "--refine", "always",
                 "-o", str(post)]) == 2
    assert "needs --target-ess" in capsys.readouterr().err and not post.exists()
    # a tiny fine-tuning through the CLI: settings are the defaults but the budget is bounded by time
    from gwnpe.inference import refinement

    saved = dict(refinement.DEFAULTS)
    refinement.DEFAULTS.update(waveforms=300, epochs=1, batch_size=100)
    try:
        assert main(["sample", "--model", str(out / "model.pt"), "--strain", str(path), "-n", "200", "--seed", "1",
                     "--target-ess", "1e9", "--max-samples", "200", "--refine", "always", "-o", str(post)]) == 0
    finally:
        refinement.DEFAULTS.clear()
        refinement.DEFAULTS.update(saved)
    r = bilby.core.result.read_in_result(str(post))
    ref = r.meta_data["gwnpe"]["importance_sampling"]["refinement"]
    assert ref["refined"] and ref["mode"] == "always" and "efficiency_before" in ref and "truncation" in ref
    refined = load_model(tmp_path / "post.refined.pt")
    assert refined.settings["refinement"]["bounds"] == ref.get("bounds", {})  # (an empty box is not stored in HDF5)
    assert len(r.posterior) == 200
