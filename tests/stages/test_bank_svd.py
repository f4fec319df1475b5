"""Waveform bank and reduced basis: layout, determinism, projection power, tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from gwnpe.products.bank import load_bank

from gwnpe.stages.bank import run_bank_stage

from gwnpe.stages.settings import stage_settings
from gwnpe.errors import BasisError, WaveformError
from gwnpe.products.common import read_provenance
from gwnpe.provenance import input_provenance, stored_text
from gwnpe.gw.noise import whiten
from gwnpe.products.psd import psd_on_domain
from gwnpe.gw.svd import projection_mismatch, time_shift
from gwnpe.products.basis import load_basis
from gwnpe.stages.svd import run_svd_stage

from tests.conftest import REPO, sha256


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_config):
    """Bank and basis of the tiny config, built once for the module."""
    import copy

    from gwnpe.gw.domain import build_domain

    from tests.conftest import bilby_curve_psd

    cfg = copy.deepcopy(tiny_config)
    d = tmp_path_factory.mktemp("built")
    freqs = build_domain(cfg).full_frequencies
    psds = {}
    for i, ifo in enumerate(cfg["detectors"]):
        psds[ifo] = d / f"{ifo}_psd.txt"
        np.savetxt(psds[ifo], np.c_[freqs, bilby_curve_psd(freqs) * (1 + 0.5 * i)])
    run_bank_stage(stage_settings(cfg, "bank"), out_path=d / "bank.h5", progress=False)
    stats = run_svd_stage(stage_settings(cfg, "svd"), bank_path=d / "bank.h5", psd_paths=psds, out_path=d / "basis.h5", plot_path=d / "mismatch.png", threads=1)
    return cfg, d, psds, stats


def test_bank_layout_and_provenance(built):
    cfg, d, _, _ = built
    bank = load_bank(d / "bank.h5")
    n = cfg["bank"]["size"]
    assert set(bank.parameters) == {"chirp_mass", "mass_ratio", "theta_jn", "phase"}
    assert bank.h_plus.shape == bank.h_cross.shape == (n, len(bank.frequencies))
    assert bank.frequencies[0] == cfg["domain"]["f_min"] and bank.frequencies[-1] == cfg["domain"]["f_max"]
    assert np.isfinite(bank.h_plus).all()
    mc = bank.parameters["chirp_mass"]
    assert 20 <= mc.min() and mc.max() <= 40
    prov = read_provenance(d / "bank.h5")
    assert prov["stage"] == "bank"
    assert prov["settings"]["seed"] == cfg["seed"]
    assert "chirp_mass" in stored_text(prov, prov["settings"]["prior_file"])
    assert {"lal", "lalsimulation", "bilby", "pycbc", "torch", "gwnpe"} <= set(prov["versions"])


def test_bank_is_byte_identical_for_the_same_seed(built, tmp_path):
    cfg, d, _, _ = built
    cfg = {**cfg, "bank": {"size": 50}}
    run_bank_stage(stage_settings(cfg, "bank"), out_path=tmp_path / "a.h5", progress=False)
    run_bank_stage(stage_settings(cfg, "bank"), out_path=tmp_path / "b.h5", progress=False)
    assert sha256(tmp_path / "a.h5") == sha256(tmp_path / "b.h5")
    run_bank_stage(stage_settings({**cfg, "seed": cfg["seed"] + 1}, "bank"), out_path=tmp_path / "c.h5", progress=False)
    assert sha256(tmp_path / "a.h5") != sha256(tmp_path / "c.h5")


def test_failing_bank_leaves_no_output(built, tmp_path):
    cfg, _, _, _ = built
    prior = tmp_path / "heavy.prior"
    prior.write_text((REPO / "config/priors/default.prior").read_text().replace("minimum=20.0, maximum=40.0", "minimum=1500.0, maximum=2000.0"))
    cfg = {**cfg, "priors": str(prior), "bank": {"size": 20}}
    out = tmp_path / "bank.h5"
    with pytest.raises(WaveformError, match="max_failure_fraction"):
        run_bank_stage(stage_settings(cfg, "bank"), out_path=out, progress=False)
    assert not out.exists() and not list(tmp_path.glob(".bank.h5*"))


def test_basis_is_orthonormal_and_meets_tolerance(built):
    cfg, d, _, stats = built
    basis = load_basis(d / "basis.h5")
    V = basis.V
    assert V.shape[1] == cfg["svd"]["size"]
    np.testing.assert_allclose(V.conj().T @ V, np.eye(V.shape[1]), atol=1e-10)
    assert stats["mismatch_max"] <= cfg["svd"]["tolerance"]
    assert stats["mismatch_median"] <= stats["mismatch_p99"] <= stats["mismatch_max"]
    prov = read_provenance(d / "basis.h5")
    assert input_provenance(prov, "bank")["stage"] == "bank"
    assert (d / "mismatch.png").stat().st_size > 10_000


def test_projection_keeps_the_full_grid_power(built):
    """Coefficients h @ V carry the whitened waveform's power (the conjugated product does not)."""
    cfg, d, psds, stats = built
    basis = load_basis(d / "basis.h5")
    bank = load_bank(d / "bank.h5")
    from gwnpe.gw.domain import build_domain

    dom = build_domain(cfg)
    # held-out waveforms, time-shifted, whitened with a detector's own PSD
    h = time_shift(bank.h_cross[-20:], dom.frequencies, np.linspace(-0.1, 0.1, 20))
    hw = whiten(h, np.sqrt(psd_on_domain(psds["L1"], dom)), dom.delta_f)
    full = np.sum(np.abs(hw) ** 2, axis=1)  # full-grid inner product = optimal SNR^2
    good = np.sum(np.abs(hw @ basis.V) ** 2, axis=1)
    bad = np.sum(np.abs(hw @ basis.V.conj()) ** 2, axis=1)
    np.testing.assert_allclose(good / full, 1.0, atol=2 * cfg["svd"]["tolerance"])
    assert np.all(bad / full < 0.97)
    # compression round trip of unwhitened waveforms
    hp = bank.h_plus[-5:]
    rel = np.abs(basis.decompress(basis.compress(hp)) - hp).max(axis=1) / np.abs(hp).max(axis=1)
    assert rel.max() < 1e-2
    mm = projection_mismatch(hw, basis.V)
    assert np.all(np.diff(mm, axis=1) <= 1e-12)  # more basis vectors never hurt


def test_too_small_basis_fails_and_leaves_no_output(built, tmp_path):
    cfg, d, psds, _ = built
    cfg = {**cfg, "svd": {**cfg["svd"], "size": 8}}
    out = tmp_path / "basis.h5"
    with pytest.raises(BasisError) as info:
        run_svd_stage(stage_settings(cfg, "svd"), bank_path=d / "bank.h5", psd_paths=psds, out_path=out, plot_path=tmp_path / "mm.png", threads=1)
    msg = str(info.value)
    assert "svd.tolerance" in msg and "svd.size = 8" in msg
    assert not out.exists()


def test_basis_is_deterministic(built, tmp_path):
    cfg, d, psds, _ = built
    run_svd_stage(stage_settings(cfg, "svd"), bank_path=d / "bank.h5", psd_paths=psds, out_path=tmp_path / "b.h5", plot_path=None, threads=1)
    np.testing.assert_array_equal(load_basis(tmp_path / "b.h5").V, load_basis(d / "basis.h5").V)


def test_missing_or_corrupt_stage_outputs_name_the_stage(tmp_path):
    from gwnpe.errors import GwnpeError

    with pytest.raises(GwnpeError, match="run the bank stage"):
        load_bank(tmp_path / "bank.h5")
    corrupt = tmp_path / "basis.h5"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(BasisError, match="rerun the svd stage"):
        load_basis(corrupt)
