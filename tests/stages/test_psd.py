"""PSD stage: outputs round-trip exactly, carry provenance and are written atomically."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest

import gwnpe.products.psd
from tests.conftest import REPO
from gwnpe.config import read_config
from gwnpe.gw.domain import build_domain
from gwnpe.gw.strain_io import psd_window
from gwnpe.products.common import read_provenance
from gwnpe.products.psd import psd_on_domain, read_psd, write_psd
from gwnpe.provenance import make_provenance
from gwnpe.stages.psd import run_psd_stage




@pytest.fixture(scope="module")
def tiny():
    return read_config(REPO / "config" / "tiny.yaml")


def test_write_read_roundtrip_exact(tmp_path):
    rng = np.random.default_rng(11)
    freqs = np.arange(1025) * (1 / 4.0)
    psd = rng.lognormal(size=1025) * 1e-46 * (1 + rng.random(1025) / 3)
    psd[0] = np.inf
    prov = make_provenance("psd", {"ifo": "H1", "seed": 7})
    path = tmp_path / "psd_H1.txt"
    write_psd(path, freqs, psd, prov)
    back = read_psd(path)
    f2, p2 = back.frequencies, back.psd
    np.testing.assert_array_equal(f2, freqs)
    np.testing.assert_array_equal(p2, psd)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# gwnpe-provenance ")
    assert lines[1] == "# frequency [Hz]  PSD [1/Hz]"
    back = read_provenance(path)
    assert back["stage"] == "psd" and back["settings"] == {"ifo": "H1", "seed": 7}


def test_failing_write_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "psd_L1.txt"
    prov = make_provenance("psd", {"ifo": "L1"})

    def disk_full(fname, *args, **kwargs):
        Path(fname).write_text("# gwnpe-provenance {}\n0 1e-46\n")  # partial output, then failure
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gwnpe.products.psd.np, "savetxt", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_psd(path, [0.0, 0.25], [1e-46, 2e-46], prov)
    assert list(tmp_path.iterdir()) == []
    # an earlier complete file survives a failed rewrite untouched
    monkeypatch.undo()
    write_psd(path, [0.0, 0.25], [1e-46, 2e-46], prov)
    before = path.read_bytes()
    monkeypatch.setattr(gwnpe.products.psd.np, "savetxt", disk_full)
    with pytest.raises(OSError):
        write_psd(path, [0.0, 0.25], [3e-46, 4e-46], prov)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_run_psd_stage_tiny(tmp_path, tiny, caplog):
    cfg = copy.deepcopy(tiny)
    out_txt, out_png = tmp_path / "psd" / "L1.txt", tmp_path / "plots" / "psd_L1.png"
    with caplog.at_level(logging.INFO, logger="gwnpe.stages.psd"):
        info = run_psd_stage("L1", cfg, out_psd=out_txt, out_plot=out_png)
    freqs = read_psd(out_txt).frequencies
    domain = build_domain(cfg)
    np.testing.assert_array_equal(freqs, domain.full_frequencies)
    on_domain = psd_on_domain(out_txt, domain)
    assert len(on_domain) == len(domain) and np.all(np.isfinite(on_domain)) and np.all(on_domain > 0)
    prov = read_provenance(out_txt)
    assert prov["stage"] == "psd"
    assert prov["settings"]["ifo"] == "L1" and prov["settings"]["seed"] == 7
    assert prov["settings"]["detector_index"] == 1
    assert prov["settings"]["psd"]["source"] == "simulated"
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 10_000
    assert info["n_averages"] == 127 and info["window"] == "hann"
    assert info["strain_end"] == pytest.approx(psd_window(cfg)[1])
    assert abs(info["median_ratio"] - 1) < 0.03
    text = caplog.text
    assert "simulated" in text and "127" in text and "median estimate/reference" in text
    # the same config gives the same bytes
    out2 = tmp_path / "again.txt"
    run_psd_stage("L1", copy.deepcopy(cfg), out_psd=out2, out_plot=tmp_path / "again.png")
    assert out2.read_bytes() == out_txt.read_bytes()
