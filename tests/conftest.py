"""Shared fixtures: small validated configs and PSD files made by the tests themselves."""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    """Relative paths in the configs (priors) resolve against the checkout."""
    monkeypatch.chdir(REPO)


@pytest.fixture(scope="session")
def tiny_config():
    from gwnpe.config import load_config

    return load_config(REPO / "config" / "tiny.yaml")


@pytest.fixture
def config(tiny_config):
    """A fresh, mutable copy of the validated tiny config."""
    return copy.deepcopy(tiny_config)


def bilby_curve_psd(frequencies: np.ndarray, name: str = "aLIGO_O4_high_asd.txt") -> np.ndarray:
    """PSD [1/Hz] of one of bilby's shipped ASD curves on ``frequencies``."""
    import bilby

    path = Path(bilby.gw.detector.__file__).parent / "noise_curves" / name
    f, asd = np.loadtxt(path).T
    return np.interp(frequencies, f, asd) ** 2


@pytest.fixture
def psd_files(tmp_path, config):
    """Two-column PSD files (the aLIGO O4 curve, scaled differently per detector) on 0..Nyquist."""
    from gwnpe.domain import build_domain

    freqs = build_domain(config).full_frequencies
    psd = bilby_curve_psd(freqs)
    out = {}
    for i, ifo in enumerate(config["detectors"]):
        p = tmp_path / f"{ifo}_psd.txt"
        np.savetxt(p, np.c_[freqs, psd * (1 + 0.5 * i)])
        out[ifo] = p
    return out


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def two_threads():
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    return 2


@pytest.fixture(scope="session")
def tiny_products(tmp_path_factory, tiny_config):
    """PSDs, bank, basis and training set of config/tiny.yaml, built once through the library."""
    import copy

    from gwnpe.bank import bank_settings, run_bank_stage
    from gwnpe.psd import run_psd_stage
    from gwnpe.svd import run_svd_stage, svd_settings
    from gwnpe.training_set import run_training_set_stage

    cfg = copy.deepcopy(tiny_config)
    d = tmp_path_factory.mktemp("tiny_products")
    psds = {}
    for ifo in cfg["detectors"]:
        psds[ifo] = d / f"{ifo}_psd.txt"
        run_psd_stage(ifo, cfg, psds[ifo], d / f"{ifo}_psd.png")
    run_bank_stage(bank_settings(cfg), d / "bank.h5", progress=False)
    run_svd_stage(svd_settings(cfg), d / "bank.h5", psds, d / "basis.h5", None, threads=1)
    run_training_set_stage(cfg, prior_path=cfg["priors"], basis_path=d / "basis.h5",
                           out_path=d / "training_set.h5", threads=2, progress=False)
    return {"config": cfg, "dir": d, "psds": psds, "basis": d / "basis.h5", "training_set": d / "training_set.h5",
            "bank": d / "bank.h5"}


def noise_event(model, seed=0):
    """Noise-only frequency-domain strain on a model's band with the model's PSDs (phase origin: segment start)."""
    from gwnpe.inference.sampling import model_domain

    dom = model_domain(model)
    rng = np.random.default_rng(seed)
    psds = {ifo: a**2 for ifo, a in zip(model.settings["detectors"], model.extra["asds"])}
    strain = {ifo: (rng.normal(size=len(dom)) + 1j * rng.normal(size=len(dom))) * np.sqrt(psds[ifo] / (4 * dom.delta_f))
              for ifo in psds}
    return strain, psds
