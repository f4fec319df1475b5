"""The importance_sampling stage: one batch, or batches to a target ESS with likelihoods on dask workers."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from gwnpe.stages.settings import stage_settings, with_runtime


@pytest.fixture(scope="module")
def campaign(tiny_model, tiny_products, tmp_path_factory):
    from gwnpe.stages.injections import run_injections_stage

    out, _, cfg = tiny_model
    cfg = copy.deepcopy(cfg)
    cfg["injections"]["count"] = 2
    d = tmp_path_factory.mktemp("is_stage")
    run_injections_stage(stage_settings(cfg, "injections"), psd_paths=tiny_products["psds"],
                         out_path=d / "injections.h5")
    return cfg, out / "model.pt", d / "injections.h5", d


@pytest.mark.slow
def test_stage_reaches_a_target_ess_on_dask_workers_and_records_it(campaign):
    import bilby

    from gwnpe.stages.importance_sampling import run_importance_sampling_stage

    cfg, model, injections, d = campaign
    cfg["comparison"].update(n_samples=200, target_ess=None, max_samples=2000)
    one = run_importance_sampling_stage(with_runtime(stage_settings(cfg, "importance_sampling"), cfg,
                                                     "importance_sampling"),
                                        model_path=model, injections_path=injections, index=1, out_path=d / "one.hdf5")
    assert one["n"] == 200 and "target_ess" not in one
    # a target above one batch's ESS: more batches, on two dask workers, and the first batch is the one above
    cfg["comparison"]["target_ess"] = 1.5 * one["ess"]
    cfg["dask"].update(cluster="local", n_workers=2)
    settings = with_runtime(stage_settings(cfg, "importance_sampling"), cfg, "importance_sampling")
    assert "dask" not in stage_settings(cfg, "importance_sampling")  # runtime only: never a rerun trigger
    many = run_importance_sampling_stage(settings, model_path=model, injections_path=injections, index=1,
                                         out_path=d / "many.hdf5", threads=2)
    assert many["n_batches"] >= 2 and many["n"] == 200 * many["n_batches"]
    assert many["reached"] == (many["ess"] >= many["target_ess"])
    assert many["reached"] or many["n"] == 2000
    r1 = bilby.core.result.read_in_result(str(d / "one.hdf5"))
    rm = bilby.core.result.read_in_result(str(d / "many.hdf5"))
    assert len(rm.posterior) == many["n"]
    np.testing.assert_array_equal(rm.posterior["log_likelihood"].to_numpy()[:200], r1.posterior["log_likelihood"].to_numpy())
    meta = rm.meta_data["gwnpe"]["importance_sampling"]
    assert meta["n_batches"] == many["n_batches"] and meta["target_ess"] == many["target_ess"]
    np.testing.assert_allclose(rm.posterior["weights"].mean(), 1.0, rtol=1e-12)
