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


def test_accuracy_events_are_the_first_loud_injections():
    from gwnpe.stages.workflow import accuracy_indices

    snrs = [5.0, 9.0, 7.9, 8.0, 30.0, 12.0]
    assert accuracy_indices({"injections": 3, "min_snr": 8.0}, snrs) == [1, 3, 4]
    assert accuracy_indices({"injections": 10, "min_snr": 8.0}, snrs) == [1, 3, 4, 5]  # fewer when the campaign has fewer
    assert accuracy_indices({"injections": 0, "min_snr": 8.0}, snrs) == []


@pytest.mark.slow
def test_accuracy_stage_tabulates_events_sampled_to_the_target(campaign):
    import json

    import pandas as pd

    from gwnpe.stages.accuracy import run_accuracy_stage
    from gwnpe.stages.importance_sampling import run_importance_sampling_stage

    cfg, model, injections, d = campaign
    cfg["accuracy"].update(injections=2, min_snr=0.0, n_samples=200, target_ess=3.0, max_samples=600)
    settings = with_runtime(stage_settings(cfg, "accuracy_sampling"), cfg, "accuracy_sampling")
    paths = []
    for i in (0, 1):
        paths.append(d / f"acc_{i}.hdf5")
        run_importance_sampling_stage(settings, model_path=model, injections_path=injections, index=i,
                                      out_path=paths[-1], section="accuracy")
    summary = run_accuracy_stage(stage_settings(cfg, "accuracy"), indices=[0, 1], paths=paths, out_csv=d / "acc.csv",
                                 out_json=d / "acc.json", out_plot=d / "acc.png")
    table = pd.read_csv(d / "acc.csv")
    assert list(table.injection) == [0, 1] and (table.n_samples <= 600).all() and (table.n_samples % 200 == 0).all()
    assert ((table.ess >= 3.0) == table.reached).all()
    assert summary["events"] == 2 and summary["reached_target"] == int(table.reached.sum())
    assert json.loads((d / "acc.json").read_text())["median_efficiency"] == pytest.approx(np.median(table.efficiency))
    assert (d / "acc.png").stat().st_size > 0
    # the campaign's draws are not the comparison's of the same event
    import bilby

    cfg["comparison"].update(n_samples=200, target_ess=None)
    run_importance_sampling_stage(with_runtime(stage_settings(cfg, "importance_sampling"), cfg, "importance_sampling"),
                                  model_path=model, injections_path=injections, index=0, out_path=d / "cmp_0.hdf5")
    a = bilby.core.result.read_in_result(str(d / "cmp_0.hdf5")).posterior["log_likelihood"].to_numpy()
    b = bilby.core.result.read_in_result(str(paths[0])).posterior["log_likelihood"].to_numpy()[:200]
    assert not np.array_equal(a, b)


@pytest.mark.slow
def test_accuracy_stage_with_refinement_records_before_and_after(campaign):
    """accuracy.refine always: each event's result records the efficiency before and after refinement and
    the truncation check, the refined network is written beside the result and loads, and the table has
    the refinement columns."""
    import pandas as pd

    from gwnpe.products.model import load_model, refined_model_path
    from gwnpe.stages.accuracy import run_accuracy_stage
    from gwnpe.stages.importance_sampling import run_importance_sampling_stage

    cfg, model, injections, d = campaign
    cfg = copy.deepcopy(cfg)
    cfg["accuracy"].update(injections=1, min_snr=0.0, n_samples=200, target_ess=1e6, max_samples=200, refine="always",
                           refinement={"waveforms": 300, "epochs": 1, "batch_size": 100})
    settings = with_runtime(stage_settings(cfg, "accuracy_sampling"), cfg, "accuracy_sampling")
    out = d / "refined_0.hdf5"
    with pytest.warns(Warning, match="sample budget"):
        summary = run_importance_sampling_stage(settings, model_path=model, injections_path=injections, index=0,
                                                out_path=out, section="accuracy")
    ref = summary["refinement"]
    assert ref["refined"] and ref["mode"] == "always" and ref["efficiency_after"] == summary["efficiency"]
    assert load_model(refined_model_path(out)).settings["refinement"]["settings"]["waveforms"] == 300
    run_accuracy_stage(stage_settings(cfg, "accuracy"), indices=[0], paths=[out], out_csv=d / "racc.csv",
                       out_json=d / "racc.json", out_plot=d / "racc.png")
    row = pd.read_csv(d / "racc.csv").iloc[0]
    assert bool(row.refined) and row.efficiency_before == pytest.approx(ref["efficiency_before"])
    assert row.refine_time_s > 0 and row.truncation_ok in (True, False)


@pytest.mark.parametrize("efficiency, reached", [([0.01, 0.002], [True, False]), ([0.3], [True]), ([1e-4, 2e-4], [False, False])])
def test_efficiency_histogram_counts_every_event(efficiency, reached):
    from gwnpe.diagnostics.plots import efficiency_figure

    fig = efficiency_figure(np.array(efficiency), np.array(reached), 2000)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert sum(heights) == len(efficiency)
