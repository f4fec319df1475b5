"""Importance sampling in batches to a target ESS, with likelihoods on dask workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gwnpe.errors import ImportanceSamplingWarning
from gwnpe.inference.importance_sampling import importance_sample, importance_sample_to_target, importance_weights
from gwnpe.inference.sampling import sample_posterior
from gwnpe.products.model import load_model
from tests.conftest import noise_event


@pytest.fixture(scope="module")
def event(tiny_model):
    out, _, cfg = tiny_model
    model = load_model(out / "model.pt")
    strain, psds = noise_event(model, seed=3)
    return model, strain, psds, cfg["trigger_time"] - 2.0, cfg["waveform"]["approximant"], cfg["waveform"]["reference_frequency"]


def test_likelihoods_on_dask_workers_give_the_serial_weights(event):
    from gwnpe.stages.cluster import dask_client

    model, strain, psds, start, approximant, f_ref = event
    post = sample_posterior(model, strain, psds, 500, start_time=start, seed=2)
    args = (model, strain, psds, start, post["samples"], post["log_q"], 500 / post["acceptance"], approximant, f_ref)
    serial = importance_sample(*args)
    with dask_client({"cluster": "local", "n_workers": 2}, 2) as client:
        parallel = importance_sample(*args, client=client, chunk_size=64)
    np.testing.assert_array_equal(parallel["log_likelihood"], serial["log_likelihood"])
    np.testing.assert_array_equal(parallel["weights"], serial["weights"])
    assert parallel["log_evidence"] == serial["log_evidence"] and parallel["ess"] == serial["ess"]


def test_target_ess_stops_at_the_first_batch_that_reaches_it(event):
    model, strain, psds, start, approximant, f_ref = event
    kw = dict(batch_size=300, seed=5)
    first = importance_sample_to_target(model, strain, psds, start, approximant, f_ref, target_ess=1.0,
                                        max_samples=3000, **kw)
    assert first["n_batches"] == 1 and first["reached"] and first["n"] == 300
    # a target between the ESS of one batch and that of four: more batches, and it stops as soon as it is met
    target = 2.5 * first["ess"]
    res = importance_sample_to_target(model, strain, psds, start, approximant, f_ref, target_ess=target,
                                      max_samples=30000, **kw)
    b = res["n_batches"]
    assert res["reached"] and res["ess"] >= target and res["n"] == 300 * b and b >= 2
    n_prev = 300 * (b - 1)
    prev = importance_weights(res["log_likelihood"][:n_prev], res["log_prior"][:n_prev], res["log_q"][:n_prev])
    assert prev["ess"] < target  # one batch fewer had not reached it
    # the first batch is the same draw whatever the target (seeded per batch)
    np.testing.assert_array_equal(res["log_likelihood"][:300], first["log_likelihood"])
    assert {"ess", "efficiency", "pareto_k", "n_drawn", "target_ess", "reached", "n_batches"} <= set(res)
    # an unreachable target stops at the budget, says so, and is not "reached"
    with pytest.warns(ImportanceSamplingWarning, match="sample budget of 600"):
        res = importance_sample_to_target(model, strain, psds, start, approximant, f_ref, target_ess=1e9,
                                          max_samples=600, **kw)
    assert not res["reached"] and res["n"] == 600 and res["n_batches"] == 2


def test_cli_target_ess(event, tiny_model, tmp_path):
    import bilby

    from gwnpe.inference.sampling import model_domain
    from gwnpe.products.strain import write_fd_strain

    model, strain, psds, start, *_ = event
    out, _, cfg = tiny_model
    path = tmp_path / "strain.h5"
    write_fd_strain(path, model_domain(model).frequencies, strain, start, cfg["trigger_time"])
    res = subprocess.run(
        [str(Path(sys.executable).with_name("gwnpe")), "sample", "--model", str(out / "model.pt"), "--strain", str(path),
         "-n", "500", "--target-ess", "3", "--max-samples", "20000", "--workers", "2", "--seed", "1",
         "-o", str(tmp_path / "post.hdf5")],
        capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "ESS" in res.stdout and "Pareto k-hat" in res.stdout
    r = bilby.core.result.read_in_result(str(tmp_path / "post.hdf5"))
    summary = r.meta_data["gwnpe"]["importance_sampling"]
    # (the tiny model's efficiency on noise is ~0.2%: a small target, reached after a few batches)
    assert summary["reached"] and summary["ess"] >= 3 and summary["target_ess"] == 3, (summary, res.stdout[-2000:])
    assert len(r.posterior) == summary["n"] == 500 * summary["n_batches"]
    assert r.posterior["weights"].mean() == pytest.approx(1.0)
