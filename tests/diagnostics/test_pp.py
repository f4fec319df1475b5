"""PP-test: agreement with bilby's make_pp_plot, and a test that can fail."""

from __future__ import annotations


import numpy as np
import pytest

from gwnpe.diagnostics.pp import credible_levels, pp_test

from gwnpe.stages.pp import run_pp_stage


def _gaussian_results(tmp_path, n=60, shift=0.0, seed=0):
    """bilby Results whose posteriors are N(x_obs, 1) for truths x ~ N(x_obs, 1): calibrated when shift = 0."""
    import bilby
    import pandas as pd

    rng = np.random.default_rng(seed)
    paths = []
    priors = bilby.core.prior.PriorDict({"a": bilby.core.prior.Uniform(-10, 10, "a"), "b": bilby.core.prior.Uniform(-10, 10, "b")})
    for i in range(n):
        truth = {"a": rng.uniform(-3, 3), "b": rng.uniform(-3, 3)}
        obs = {k: v + rng.normal() for k, v in truth.items()}
        post = pd.DataFrame({k: obs[k] + shift + rng.normal(size=800) for k in truth})
        r = bilby.core.result.Result(label=f"r{i}", search_parameter_keys=["a", "b"], priors=priors, posterior=post,
                                     injection_parameters=truth)
        p = tmp_path / f"r{i}.hdf5"
        r.save_to_file(filename=str(p), extension="hdf5", overwrite=True)
        paths.append(p)
    return paths


def test_pvalues_agree_with_bilby_make_pp_plot(tmp_path):
    import bilby

    paths = _gaussian_results(tmp_path)
    ours = run_pp_stage(paths, out_json=tmp_path / "pp.json", out_plot=tmp_path / "pp.png", out_table=tmp_path / "pp.csv")
    results = [bilby.core.result.read_in_result(str(p)) for p in paths]
    _, pvals = bilby.core.result.make_pp_plot(results, save=False, keys=["a", "b"])
    for name, p in zip(pvals.names, pvals.pvalues):
        assert ours["pvalues"][name] == pytest.approx(p, abs=1e-6)
    assert ours["combined_pvalue"] == pytest.approx(pvals.combined_pvalue, abs=1e-6)
    assert ours["n_injections"] == 60
    assert (tmp_path / "pp.png").stat().st_size > 10_000
    assert "combined (Fisher)" in (tmp_path / "pp.csv").read_text()


def test_biased_posteriors_fail_and_calibrated_ones_pass(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "b").mkdir()
    good = run_pp_stage(_gaussian_results(tmp_path / "g", n=150, seed=1), out_json=tmp_path / "g.json", out_plot=tmp_path / "g.png")
    bad = run_pp_stage(_gaussian_results(tmp_path / "b", n=150, shift=0.7, seed=1), out_json=tmp_path / "b.json", out_plot=tmp_path / "b.png")
    assert good["combined_pvalue"] > 0.01
    assert bad["combined_pvalue"] < 1e-4


def test_credible_level_and_pp_test_basics():
    assert credible_levels(np.arange(10.0), 2.5) == 0.3
    uniform = {"x": np.linspace(0.005, 0.995, 100)}
    assert pp_test(uniform)["pvalues"]["x"] > 0.99
    skewed = {"x": np.linspace(0, 1, 100) ** 3}
    assert pp_test(skewed)["pvalues"]["x"] < 1e-6
