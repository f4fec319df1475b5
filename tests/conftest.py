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
    from gwnpe.stages.workflow import load_config

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
    from gwnpe.gw.domain import build_domain

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
    from gwnpe.stages.bank import run_bank_stage
    from gwnpe.stages.psd import run_psd_stage
    from gwnpe.stages.settings import stage_settings
    from gwnpe.stages.svd import run_svd_stage
    from gwnpe.stages.training_set import run_training_set_stage

    cfg = copy.deepcopy(tiny_config)
    d = tmp_path_factory.mktemp("tiny_products")
    psds = {}
    for ifo in cfg["detectors"]:
        psds[ifo] = d / f"{ifo}_psd.txt"
        run_psd_stage(ifo, cfg, out_psd=psds[ifo], out_plot=d / f"{ifo}_psd.png")
    run_bank_stage(stage_settings(cfg, "bank"), out_path=d / "bank.h5", progress=False)
    run_svd_stage(stage_settings(cfg, "svd"), bank_path=d / "bank.h5", psd_paths=psds, out_path=d / "basis.h5",
                  plot_path=None, threads=1)
    run_training_set_stage(cfg, prior_path=cfg["priors"], basis_path=d / "basis.h5",
                           out_path=d / "training_set.h5", threads=2, progress=False)
    return {"config": cfg, "dir": d, "psds": psds, "basis": d / "basis.h5", "training_set": d / "training_set.h5",
            "bank": d / "bank.h5"}


def train_model(cfg: dict, out_dir, *, training_set, basis, psds: dict, threads: int = 2, on_epoch_end=None,
                asd_dataset=None) -> list[dict]:
    """Run the train stage with ``cfg`` into ``out_dir`` (model.pt, history.csv, loss.png, throughput.csv,
    checkpoint.pt); returns the history."""
    from gwnpe.stages.train import TrainOutputs, run_train_stage

    out_dir = Path(out_dir)
    out = TrainOutputs(model=out_dir / "model.pt", history=out_dir / "history.csv", plot=out_dir / "loss.png",
                       checkpoint=out_dir / "checkpoint.pt", throughput=out_dir / "throughput.csv")
    return run_train_stage(cfg, training_set_path=training_set, basis_path=basis, psd_paths=psds, out=out,
                           threads=threads, on_epoch_end=on_epoch_end, asd_dataset_path=asd_dataset)


def train_tiny(products: dict, out_dir, epochs: int, on_epoch_end=None, **training) -> tuple[Path, list[dict], dict]:
    """The tiny config trained for ``epochs`` (training keys overridden by ``training``) into ``out_dir``:
    (out_dir, history, config)."""
    cfg = copy.deepcopy(products["config"])
    cfg["training"].update(epochs=epochs, **training)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hist = train_model(cfg, out_dir, training_set=products["training_set"], basis=products["basis"],
                       psds=products["psds"], on_epoch_end=on_epoch_end)
    return out_dir, hist, cfg


@pytest.fixture(scope="session")
def tiny_model(tiny_products, tmp_path_factory):
    """The one trained model of the test session: the tiny config trained for 6 epochs,
    as (folder with model.pt / history.csv / loss.png / throughput.csv, history, config)."""
    return train_tiny(tiny_products, tmp_path_factory.mktemp("tiny_model"), epochs=6)


@pytest.fixture(scope="session")
def untrained_model_path(tiny_products, tmp_path_factory):
    """model.pt of the tiny config trained for zero epochs (not calibrated: the PP-test must fail it)."""
    out, _, _ = train_tiny(tiny_products, tmp_path_factory.mktemp("untrained_model"), epochs=0)
    return out / "model.pt"


def training_data(path):
    """A training-set file as the simulator's tensors."""
    from gwnpe.nn.simulator import TrainingData
    from gwnpe.products.training_set import load_training_set

    ts = load_training_set(path)
    return TrainingData(ts.parameters, ts.h_plus, ts.h_cross)


def simulator(products: dict, dtype=None):
    """The on-the-fly simulator of the tiny products: (Simulator, domain, ASDs)."""
    import torch

    from gwnpe.gw.domain import build_domain
    from gwnpe.gw.priors import load_priors
    from gwnpe.nn.simulator import Simulator
    from gwnpe.products.basis import load_basis
    from gwnpe.products.psd import psd_on_domain

    cfg = products["config"]
    dom = build_domain(cfg)
    basis = load_basis(products["basis"])
    asds = np.sqrt([psd_on_domain(products["psds"][i], dom) for i in cfg["detectors"]])
    sim = Simulator(basis.V, basis.asd_reference, asds, dom.frequencies, cfg["detectors"], cfg["trigger_time"],
                    load_priors(cfg["priors"]), cfg["waveform"]["reference_distance"], dtype=dtype or torch.float64)
    return sim, dom, asds


def noise_strain_file(model_path, trigger_time: float, path, seed: int = 0):
    """A frequency-domain strain file of :func:`noise_event` for ``gwnpe sample --strain`` (segment start
    2 s before the trigger); returns the loaded model."""
    from gwnpe.inference.sampling import model_domain
    from gwnpe.products.model import load_model
    from gwnpe.products.strain import write_fd_strain

    model = load_model(model_path)
    strain, _ = noise_event(model, seed=seed)
    write_fd_strain(path, model_domain(model).frequencies, strain, trigger_time - 2.0, trigger_time)
    return model


def noise_event(model, seed=0):
    """Noise-only frequency-domain strain on a model's band with the model's PSDs (phase origin: segment start)."""
    from gwnpe.inference.sampling import model_domain

    dom = model_domain(model)
    rng = np.random.default_rng(seed)
    psds = {ifo: a**2 for ifo, a in zip(model.settings["detectors"], model.extra["asds"])}
    strain = {ifo: (rng.normal(size=len(dom)) + 1j * rng.normal(size=len(dom))) * np.sqrt(psds[ifo] / (4 * dom.delta_f))
              for ifo in psds}
    return strain, psds
