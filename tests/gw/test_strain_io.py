"""Strain access for the PSD stage: window, readers, error messages, GWOSC download."""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pytest

from gwnpe.config import read_config
from gwnpe.errors import ConfigError, StrainError
from gwnpe.gw.noise import load_noise_curve
from gwnpe.gw.strain_io import analysis_segment, fetch_gwosc, psd_window, read_strain
from gwnpe.stages.psd import get_psd_strain

from tests.conftest import REPO
GPS0 = 1187000000.0


def write_gwosc(path, t0, fs, data):
    """A minimal GWOSC-format HDF5 file."""
    with h5py.File(path, "w") as f:
        d = f.create_dataset("strain/Strain", data=np.asarray(data, dtype=np.float64))
        d.attrs["Xstart"] = t0
        d.attrs["Xspacing"] = 1.0 / fs
    return path


@pytest.fixture(scope="module")
def tiny():
    return read_config(REPO / "config" / "tiny.yaml")


# ----------------------------------------------------------------------------- window


def test_psd_window_adjacent_to_analysis_segment(tiny):
    cfg = copy.deepcopy(tiny)
    seg_start, seg_end = analysis_segment(cfg)
    dom = cfg["domain"]
    assert seg_start == pytest.approx(cfg["trigger_time"] - (dom["duration"] - dom["post_trigger_duration"]), abs=1e-9)
    assert seg_end - seg_start == pytest.approx(dom["duration"], abs=1e-6)
    start, end = psd_window(cfg)
    assert end == seg_start  # adjacent: ends exactly where the analysis starts
    assert end <= seg_start  # no overlap
    assert end - start == pytest.approx(cfg["psd"]["duration"], abs=1e-6)
    # the simulated strain lies inside the window, not inside the analysed segment
    t0, dt, data = get_psd_strain("H1", cfg, np.random.default_rng(0))
    assert t0 == start
    assert t0 + (len(data) - 1) * dt < seg_start
    assert len(data) == round(cfg["psd"]["duration"] * dom["sampling_frequency"])


# ----------------------------------------------------------------------------- readers


def test_gwosc_hdf5_read_and_crop(tmp_path):
    fs = 256.0
    x = np.random.default_rng(1).standard_normal(int(64 * fs))
    path = write_gwosc(tmp_path / "H-H1_TEST-1187000000-64.hdf5", GPS0, fs, x)
    start, end = GPS0 + 10.4, GPS0 + 30.4  # not on the sample grid? 0.4 s = 102.4 samples
    t0, dt, data = read_strain(path, "H1", start, end)
    assert dt == 1.0 / fs
    i0 = int(np.ceil((start - GPS0) * fs))
    assert t0 == pytest.approx(GPS0 + i0 / fs, abs=1e-9)
    assert t0 >= start and t0 - start < dt
    assert len(data) == 20 * 256
    np.testing.assert_array_equal(data, x[i0 : i0 + len(data)])
    assert data.dtype == np.float64
    # on-grid window: exactly the samples in [start, end)
    t0, dt, data = read_strain(path, "H1", GPS0 + 1, GPS0 + 2)
    assert t0 == GPS0 + 1 and len(data) == 256
    np.testing.assert_array_equal(data, x[256:512])


def test_txt_read_through_gwpy(tmp_path):
    fs = 64.0
    x = np.random.default_rng(2).standard_normal(int(32 * fs))
    times = GPS0 + np.arange(len(x)) / fs
    path = tmp_path / "L1.txt"
    np.savetxt(path, np.column_stack([times, x]), fmt="%.17g")
    t0, dt, data = read_strain(path, "L1", GPS0 + 4, GPS0 + 12, channel="L1:IGNORED")  # no channels in text
    assert t0 == pytest.approx(GPS0 + 4, abs=1e-6)
    assert dt == pytest.approx(1 / fs, rel=1e-9)
    assert len(data) == 8 * 64
    np.testing.assert_array_equal(data, x[4 * 64 : 12 * 64])


def test_gwf_needs_channel_and_reads_with_it(tmp_path):
    from gwpy.timeseries import TimeSeries

    fs = 128.0
    x = np.random.default_rng(3).standard_normal(int(16 * fs))
    path = tmp_path / "H-H1_TEST-1187000000-16.gwf"
    TimeSeries(x, t0=GPS0, sample_rate=fs, name="H1:TEST", channel="H1:TEST").write(path)
    with pytest.raises(StrainError, match=r"GWF.*channel") as exc:
        read_strain(path, "H1", GPS0, GPS0 + 8)
    assert str(path) in str(exc.value) and "psd.channels.H1" in str(exc.value)
    t0, dt, data = read_strain(path, "H1", GPS0 + 2, GPS0 + 6, channel="H1:TEST")
    assert t0 == pytest.approx(GPS0 + 2) and dt == pytest.approx(1 / fs)
    np.testing.assert_array_equal(data, x[256:768])
    with pytest.raises(StrainError, match="H1:NOPE") as exc:
        read_strain(path, "H1", GPS0, GPS0 + 8, channel="H1:NOPE")
    assert str(path) in str(exc.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.hdf5"
    with pytest.raises(StrainError, match="does not exist") as exc:
        read_strain(path, "H1", GPS0, GPS0 + 1)
    assert str(path) in str(exc.value) and "H1" in str(exc.value)


@pytest.mark.parametrize("name", ["junk.hdf5", "junk.txt", "junk.gwf"])
def test_corrupt_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(4).bytes(4096))
    with pytest.raises(StrainError) as exc:
        read_strain(path, "L1", GPS0, GPS0 + 1, channel="L1:X")
    assert str(path) in str(exc.value) and "L1" in str(exc.value)


def test_hdf5_without_strain_dataset(tmp_path):
    path = tmp_path / "other.hdf5"
    with h5py.File(path, "w") as f:
        f["foo"] = np.zeros(3)
    with pytest.raises(StrainError) as exc:
        read_strain(path, "H1", GPS0, GPS0 + 1)
    assert str(path) in str(exc.value)


def test_file_not_covering_window(tmp_path):
    path = write_gwosc(tmp_path / "short.hdf5", GPS0, 128.0, np.zeros(128 * 10))
    with pytest.raises(StrainError) as exc:
        read_strain(path, "H1", GPS0 + 5, GPS0 + 15)
    msg = str(exc.value)
    assert str(path) in msg
    assert f"{GPS0:.6f}" in msg and f"{GPS0 + 10:.6f}" in msg  # what it covers
    assert f"{GPS0 + 15:.6f}" in msg  # what is needed
    with pytest.raises(StrainError, match="covers"):
        read_strain(path, "H1", GPS0 - 1, GPS0 + 5)


def test_nans_in_window(tmp_path):
    fs = 128.0
    x = np.zeros(int(20 * fs))
    x[int(12.5 * fs) : int(12.5 * fs) + 7] = np.nan
    x[0] = np.inf  # outside the requested window below: harmless
    path = write_gwosc(tmp_path / "nan.hdf5", GPS0, fs, x)
    read_strain(path, "H1", GPS0 + 1, GPS0 + 12)  # clean part reads fine
    with pytest.raises(StrainError) as exc:
        read_strain(path, "H1", GPS0 + 1, GPS0 + 19)
    msg = str(exc.value)
    assert str(path) in msg and "7 NaN/inf" in msg and f"{GPS0 + 12.5:.6f}" in msg


def test_gap_in_txt(tmp_path):
    fs = 32.0
    times = GPS0 + np.arange(int(20 * fs)) / fs
    keep = (times < GPS0 + 8) | (times >= GPS0 + 9)  # one-second gap
    path = tmp_path / "gap.txt"
    np.savetxt(path, np.column_stack([times[keep], np.ones(keep.sum())]), fmt="%.17g")
    with pytest.raises(StrainError, match="not uniformly sampled") as exc:
        read_strain(path, "V1", GPS0 + 1, GPS0 + 15)
    assert str(path) in str(exc.value) and f"{GPS0 + 8 - 1 / fs:.6f}" in str(exc.value)


def test_files_source_slower_than_domain_is_refused(tmp_path, tiny):
    cfg = copy.deepcopy(tiny)
    start, end = psd_window(cfg)
    fs = cfg["domain"]["sampling_frequency"] / 2
    path = write_gwosc(tmp_path / "slow.hdf5", np.floor(start) - 8, fs, np.ones(int((end - start + 16) * fs)))
    cfg["psd"].update(source="files", strain_files={"H1": str(path), "L1": str(path)})
    with pytest.raises(StrainError, match="below domain.sampling_frequency") as exc:
        get_psd_strain("H1", cfg, np.random.default_rng(0))
    assert str(path) in str(exc.value)


# ----------------------------------------------------------------------------- GWOSC


def test_fetch_gwosc_through_file_url(tmp_path, monkeypatch, tiny):
    import gwosc.locate

    fs = 64.0
    remote = tmp_path / "remote"
    remote.mkdir()
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal(int(32 * fs)), rng.standard_normal(int(32 * fs))
    fa = write_gwosc(remote / "H-H1_GWOSC_4KHZ_R1-1187000000-32.hdf5", GPS0, fs, a)
    fb = write_gwosc(remote / "H-H1_GWOSC_4KHZ_R1-1187000032-32.hdf5", GPS0 + 32, fs, b)
    calls = []

    def fake_get_urls(detector, start, end, sample_rate=4096, **kwargs):
        calls.append((detector, start, end, sample_rate))
        return [fb.as_uri(), fa.as_uri()]  # order must not matter

    monkeypatch.setattr(gwosc.locate, "get_urls", fake_get_urls)
    cache = tmp_path / "cache"
    t0, dt, data = fetch_gwosc("H1", GPS0 + 20, GPS0 + 40, cache)
    assert calls == [("H1", GPS0 + 20, GPS0 + 40, 4096)]
    assert t0 == GPS0 + 20 and dt == 1 / fs and len(data) == 20 * 64
    np.testing.assert_array_equal(data, np.concatenate([a, b])[20 * 64 : 40 * 64])
    assert sorted(p.name for p in cache.iterdir()) == sorted([fa.name, fb.name])  # no temp files left

    # cached: works with the "remote" gone
    fa.unlink()
    fb.unlink()
    t0b, _, data_b = fetch_gwosc("H1", GPS0 + 20, GPS0 + 40, cache)
    assert t0b == t0
    np.testing.assert_array_equal(data_b, data)

    # through the stage dispatcher, with the window of the config
    cfg = copy.deepcopy(tiny)
    start, end = psd_window(cfg)
    c = write_gwosc(remote / "H-H1_GWOSC_4KHZ_R1-x.hdf5", np.floor(start) - 4, 1024.0,
                    rng.standard_normal(int((end - start + 8) * 1024)))
    monkeypatch.setattr(gwosc.locate, "get_urls", lambda *a, **k: [c.as_uri()])
    cfg["psd"].update(source="gwosc", cache_dir=str(tmp_path / "cache2"))
    t0, dt, data = get_psd_strain("H1", cfg, np.random.default_rng(0))
    assert start <= t0 < start + dt and dt == 1 / 1024 and len(data) == round((end - start) * 1024)


def test_fetch_gwosc_gap_between_files(tmp_path, monkeypatch):
    import gwosc.locate

    fs = 64.0
    fa = write_gwosc(tmp_path / "a.hdf5", GPS0, fs, np.zeros(int(16 * fs)))
    fb = write_gwosc(tmp_path / "b.hdf5", GPS0 + 20, fs, np.zeros(int(16 * fs)))
    monkeypatch.setattr(gwosc.locate, "get_urls", lambda *a, **k: [fa.as_uri(), fb.as_uri()])
    with pytest.raises(StrainError, match="not contiguous"):
        fetch_gwosc("L1", GPS0 + 4, GPS0 + 30, tmp_path / "cache")


def test_fetch_gwosc_failed_download_leaves_nothing(tmp_path, monkeypatch):
    import gwosc.locate

    missing = (tmp_path / "gone.hdf5").as_uri()
    monkeypatch.setattr(gwosc.locate, "get_urls", lambda *a, **k: [missing])
    cache = tmp_path / "cache"
    with pytest.raises(StrainError, match="download"):
        fetch_gwosc("H1", GPS0, GPS0 + 4, cache)
    assert list(cache.iterdir()) == []


# ----------------------------------------------------------------------------- noise curves


def test_load_noise_curve_unknown_name():
    with pytest.raises(ConfigError) as exc:
        load_noise_curve("aLIGO_O5_imaginary_asd.txt", np.array([100.0]))
    msg = str(exc.value)
    assert "aLIGO_O5_imaginary_asd.txt" in msg and "aLIGO_O4_high_asd.txt" in msg and "aplus.txt" in msg


def test_load_noise_curve_asd_psd_and_range(tmp_path):
    f = np.array([0.0, 5.0, 100.0, 1000.0, 6000.0])
    asd = load_noise_curve("aLIGO_O4_high_asd.txt", f)
    psd = load_noise_curve("aLIGO_ZERO_DET_high_P_psd.txt", f)
    aplus = load_noise_curve("aplus.txt", f)  # an ASD despite its name
    for curve in (asd, psd, aplus):
        assert np.isinf(curve[0]) and np.all(curve[2:4] > 0) and np.all(np.isfinite(curve[2:4]))
        assert not np.isnan(curve).any() and not (curve == 0).any()
    assert np.isinf(asd[1]) and np.isinf(asd[4])  # O4 curve spans 10.2-4995 Hz
    assert 1e-48 < asd[2] < 1e-45 and 1e-48 < psd[2] < 1e-45 and 1e-49 < aplus[2] < 1e-46
    # a user file, as ASD by name and with an explicit prefix
    curve = np.column_stack([[10.0, 100.0, 1000.0], [1e-22, 1e-23, 1e-22]])
    np.savetxt(tmp_path / "my_asd.txt", curve)
    np.savetxt(tmp_path / "mine.txt", curve)
    got = load_noise_curve(tmp_path / "my_asd.txt", [10.0, 100.0])
    np.testing.assert_allclose(got, [1e-44, 1e-46], rtol=1e-12)
    np.testing.assert_allclose(load_noise_curve(f"asd:{tmp_path / 'mine.txt'}", [100.0]), [1e-46], rtol=1e-12)
    np.testing.assert_allclose(load_noise_curve(tmp_path / "mine.txt", [100.0]), [1e-23], rtol=1e-12)
    # log-log interpolation: a power law is reproduced between the nodes
    np.testing.assert_allclose(load_noise_curve(tmp_path / "my_asd.txt", [np.sqrt(1000.0)]), [1e-45], rtol=1e-9)
