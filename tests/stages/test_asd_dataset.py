"""The ASD dataset stage: varied noise curves, Welch ASDs of simulated noise or of strain-file windows."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from gwnpe.gw.domain import build_domain
from gwnpe.gw.noise import load_noise_curve, varied_psd
from gwnpe.products.asd_dataset import read_asd_dataset
from gwnpe.stages.asd_dataset import run_asd_dataset_stage


def test_varied_psd_draws_scale_tilt_and_lines_as_specified():
    f = np.linspace(20, 512, 3937)
    psd = np.full_like(f, 1e-46)
    rng = np.random.default_rng(0)
    draws = [varied_psd(f, psd, rng, scale_sigma=0.2, slope_sigma=0.3, max_lines=0) for _ in range(3000)]
    scales = np.array([d[1]["scale"] for d in draws])
    slopes = np.array([d[1]["slope"] for d in draws])
    assert np.std(np.log(scales)) == pytest.approx(0.2, rel=0.06) and np.std(slopes) == pytest.approx(0.3, rel=0.06)
    # the ASD is the curve's times scale times (f / 100 Hz)^slope, exactly
    out, rec = draws[0]
    np.testing.assert_allclose(np.sqrt(out / psd), rec["scale"] * (f / 100.0) ** rec["slope"], rtol=1e-12)
    # lines: Lorentzian peaks of the drawn height at the drawn frequencies
    out, rec = varied_psd(f, psd, np.random.default_rng(5), scale_sigma=0, slope_sigma=0, max_lines=3,
                          line_height=(10.0, 10.0), line_width=0.5)
    for f0 in rec["line_frequencies"]:
        assert out[np.argmin(abs(f - f0))] / 1e-46 > 5.0
    assert np.median(out / psd) == pytest.approx(1.0, abs=1e-3)


def _settings(config, **asd):
    s = dict(config)
    s["asd_dataset"] = {**config["asd_dataset"], **asd}
    return s


def test_simulated_asds_recover_their_variants_and_do_not_depend_on_chunking(config, tmp_path):
    """Without variation the Welch ASDs scatter around the noise curve (median ratio 1 within 3%); with a
    scale-only variation each ASD's ratio to the curve is its drawn scale (times the same Welch bias);
    chunk sizes give identical files."""
    dom = build_domain(config)
    curve = np.sqrt(load_noise_curve(config["psd"]["noise_curve"], dom.frequencies))
    plain = _settings(config, size=6, segments=8, variation={"scale_sigma": 0.0, "slope_sigma": 0.0, "max_lines": 0,
                                                             "line_height": [3.0, 100.0], "line_width": 0.5})
    run_asd_dataset_stage(plain, out_path=tmp_path / "plain.h5", plot_path=tmp_path / "spread.png")
    ds = read_asd_dataset(tmp_path / "plain.h5")
    assert set(ds.asds) == set(config["detectors"]) and ds.asds["H1"].shape == (6, len(dom))
    assert np.median(ds.asds["H1"] / curve) == pytest.approx(1.0, abs=0.03)
    assert (tmp_path / "spread.png").stat().st_size > 10_000
    scaled = _settings(config, size=6, segments=8, chunk_size=4,
                       variation={"scale_sigma": 0.3, "slope_sigma": 0.0, "max_lines": 0, "line_height": [3.0, 100.0],
                                  "line_width": 0.5})
    run_asd_dataset_stage(scaled, out_path=tmp_path / "a.h5")
    a = read_asd_dataset(tmp_path / "a.h5")
    # each ASD over the curve is its drawn scale times the Welch median's small bias (the same for all)
    bias = np.median(ds.asds["L1"] / curve)
    ratios = np.array([np.median(asd / curve) / rec["scale"] for asd, rec in zip(a.asds["L1"], a.records["L1"])])
    np.testing.assert_allclose(ratios, bias, rtol=0.03)  # the scales themselves spread by ~30%
    assert np.std(np.log([r["scale"] for r in a.records["L1"]])) > 0.05
    run_asd_dataset_stage({**scaled, "asd_dataset": {**scaled["asd_dataset"], "chunk_size": 1}}, out_path=tmp_path / "b.h5")
    b = read_asd_dataset(tmp_path / "b.h5")
    # and on a dask LocalCluster of 2 workers: the same ASDs
    run_asd_dataset_stage(scaled, out_path=tmp_path / "c.h5", threads=2)
    c = read_asd_dataset(tmp_path / "c.h5")
    for ifo in config["detectors"]:
        np.testing.assert_array_equal(a.asds[ifo], b.asds[ifo])
        np.testing.assert_array_equal(a.asds[ifo], c.asds[ifo])
    assert a.records == c.records


def test_file_windows_give_welch_asds_and_skip_gaps(config, tmp_path):
    """Three 32 s windows of a GWOSC file of simulated noise, one with NaNs: two ASDs near the curve, one skipped."""
    from gwnpe.gw.noise import simulate_noise

    dom = build_domain(config)
    fs, t0, length = dom.sampling_frequency, 1000000000.0, 96.0
    freqs = np.arange(int(length * fs) // 2 + 1) / length
    files = {}
    for i, ifo in enumerate(config["detectors"]):
        data = simulate_noise(freqs, load_noise_curve(config["psd"]["noise_curve"], freqs), length, fs,
                              np.random.default_rng(i))
        if ifo == "L1":
            data[int(40 * fs):int(41 * fs)] = np.nan  # inside the second window
        files[ifo] = tmp_path / f"{ifo}.hdf5"
        with h5py.File(files[ifo], "w") as f:
            ds = f.create_dataset("strain/Strain", data=data)
            ds.attrs["Xstart"], ds.attrs["Xspacing"] = t0, 1 / fs
    s = _settings(config, size=10, segments=8, source="files", strain_files={k: str(v) for k, v in files.items()},
                  gps_start=t0, gps_end=t0 + length)
    out = run_asd_dataset_stage(s, out_path=tmp_path / "files.h5")
    assert out["asds"] == {"H1": 3, "L1": 2} and out["skipped"] == {"H1": 0, "L1": 1}
    ds = read_asd_dataset(tmp_path / "files.h5")
    curve = np.sqrt(load_noise_curve(config["psd"]["noise_curve"], dom.frequencies))
    assert np.median(ds.asds["H1"] / curve) == pytest.approx(1.0, abs=0.03)
    assert [r["gps_start"] for r in ds.records["L1"]] == [t0, t0 + 32.0, t0 + 64.0] and "skipped" in ds.records["L1"][1]


def test_the_dag_runs_the_stage_only_when_asked(tmp_path):
    from tests.workflow import copy_workflow, planned_jobs, smk, write_config

    wd = copy_workflow(tmp_path)
    off = planned_jobs(smk(wd, write_config(wd), "-n"))
    on = planned_jobs(smk(wd, write_config(wd, "on.yaml", asd_dataset={"size": 4}), "-n"))
    assert "asd_dataset" not in off and on["asd_dataset"] == 1
