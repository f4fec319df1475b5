"""The train stage: the NPE model trained on data made on the fly, with per-epoch checkpoints that resume.

The loop itself is :mod:`gwnpe.nn.training`; this module reads the training set, basis and PSDs,
builds the simulator and the model, resumes from a checkpoint made with the same settings and
inputs, and writes the model, its history, throughput and loss plot.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..products.basis import load_basis
from ..products.common import THROUGHPUT_COLUMNS, make_provenance, read_provenance, save_figure, write_history
from ..products.model import load_checkpoint, save_checkpoint, save_model
from ..products.psd import psd_on_domain
from ..products.training_set import load_training_set
from ..diagnostics.training_plots import loss_figure
from ..errors import GwnpeError
from ..gw.domain import analysis_psd, build_domain
from ..gw.likelihood import network_parameters
from ..gw.priors import EXTRINSIC, check_arrival_time_parameters, draw, load_priors
from ..nn.gnpe import gnpe_standardisation
from ..nn.model import build_model
from ..nn.simulator import Simulator, TrainingData
from ..seeding import stage_seed_sequence
from ..nn.training import evaluate, prior_standardisation, select_device, torch_seed, train_epoch
from .settings import stage_settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutputs:
    """Files of the train stage.

    Attributes
    ----------
    model : path
        Weights, the settings that rebuild the model, its ASDs and provenance (:func:`gwnpe.products.model.save_model`).
    history : path
        CSV: epoch, train_loss, validation_loss, learning_rate (byte-identical for the same seed on the CPU).
    plot : path
        Loss curves (PNG).
    checkpoint : path
        Training state after each epoch; deleted when training ends.
    throughput : path, optional
        CSV: epoch, wall_time [s], samples_per_second (machine-dependent, hence kept apart).
    """

    model: Path | str
    history: Path | str
    plot: Path | str
    checkpoint: Path | str
    throughput: Path | str | None = None


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_train_stage(
    settings: dict,
    *,
    training_set_path,
    basis_path,
    psd_paths: dict,
    out: TrainOutputs,
    asd_dataset_path=None,
    threads: int = 1,
    on_epoch_end: Callable[[int, list[dict]], None] | None = None,
) -> list[dict]:
    """Train the model; resume from ``out.checkpoint`` when it holds a run with the same settings.

    With ``model.noise_conditioning.enabled`` the ASD dataset at ``asd_dataset_path`` (its training
    part, :func:`training_asds`) is drawn from per sample after the first
    ``model.noise_conditioning.fixed_asd_epochs`` epochs (which train on the PSDs of ``psd_paths``, the
    network's reference ASDs).

    Writes the files of :class:`TrainOutputs` and returns the history (one dict per epoch).
    ``on_epoch_end(epoch, history)`` is called after each epoch's checkpoint is written.
    """
    torch.set_num_threads(max(1, int(threads)))
    tr = settings["training"]
    seed = settings["seed"]
    device = select_device(tr["device"])
    domain = build_domain(settings)
    priors = load_priors(settings["priors"])
    marginalized = list(settings["model"].get("marginalized") or [])
    # the network leaves out what importance sampling marginalises over (gwnpe.gw.likelihood)
    names = network_parameters(priors, marginalized)
    ts = load_training_set(training_set_path)
    data = TrainingData(ts.parameters, ts.h_plus, ts.h_cross)
    del ts
    missing = [k for k in names if k not in EXTRINSIC and k not in data.parameters]
    if missing:
        raise GwnpeError(
            f"training set '{training_set_path}' has no {', '.join(missing)}: it was made with another prior than "
            f"'{settings['priors']}'. Rerun the training_set stage."
        )
    basis = load_basis(basis_path)
    # the analysis PSD (window factor included): the noise level of windowed real data
    asds = np.sqrt([analysis_psd(psd_on_domain(psd_paths[ifo], domain), settings["domain"]) for ifo in settings["detectors"]])
    gnpe = settings["model"].get("gnpe") or {}
    kappa = float(gnpe["kappa"]) if gnpe.get("enabled") else None
    if kappa is not None:
        check_arrival_time_parameters(priors, settings["priors"])
    nc = settings["model"].get("noise_conditioning") or {}
    bank = None
    if nc.get("enabled"):
        bank = training_asds(asd_dataset_path, settings, domain)
        logger.info("noise conditioning: %d training ASDs per detector from '%s' (the last %.0f%% held out), drawn "
                    "per sample after %d fixed-ASD epochs", bank.shape[1], asd_dataset_path,
                    100 * float(nc["held_out_fraction"]), int(nc["fixed_asd_epochs"]))
    sim = Simulator(basis.V, basis.asd_reference, asds, domain.frequencies, settings["detectors"],
                    settings["trigger_time"], priors, settings["waveform"]["reference_distance"],
                    gnpe_kappa=kappa, asd_bank=bank).to(device)

    n = len(data)
    n_val = max(1, int(round(tr["validation_fraction"] * n)))
    if n - n_val < 1:
        raise GwnpeError(f"training set of {n} waveforms leaves none for training after the validation split.")
    train_idx, val_idx = torch.arange(n - n_val), torch.arange(n - n_val, n)
    if kappa is None:
        mean, std = prior_standardisation(priors, names, seed)
    else:
        rng = np.random.default_rng(stage_seed_sequence(seed, "standardisation"))
        stats = gnpe_standardisation(draw(priors, names, 100_000, rng), names, settings["detectors"],
                                     settings["trigger_time"], kappa, rng)
        mean, std = stats["parameters"]
    model_settings = {
        "model": settings["model"],
        "parameters": names,
        "marginalized": marginalized,
        "detectors": list(settings["detectors"]),
        "n_bins": len(domain),
        "basis_size": basis.size,
        "domain": settings["domain"],
        "trigger_time": settings["trigger_time"],
        "prior_file": Path(settings["priors"]).read_text(),
        "reference_distance": settings["waveform"]["reference_distance"],
        "waveform": dict(settings["waveform"]),  # for importance sampling with the exact likelihood
    }
    torch.manual_seed(torch_seed(seed, "init"))
    model = build_model(model_settings, torch.from_numpy(basis.V), mean, std,
                        asd_reference=asds if bank is not None else None)
    if kappa is not None:
        with torch.no_grad():
            model.proxy_mean.copy_(torch.as_tensor(stats["proxies"][0]))
            model.proxy_std.copy_(torch.as_tensor(stats["proxies"][1]))
            model.init.mean.copy_(torch.as_tensor(stats["arrival"][0]))
            model.init.std.copy_(torch.as_tensor(stats["arrival"][1]))
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=tr["learning_rate"], weight_decay=tr["weight_decay"])
    B = tr["batch_size"]
    steps = math.ceil(len(train_idx) / B)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, tr["epochs"] * steps))
    amp = bool(tr["mixed_precision"]) and device.type == "cuda"
    if tr["mixed_precision"] and not amp:
        logger.warning("training.mixed_precision ignored: it applies to CUDA only")

    run_hash = _hash({"settings": stage_settings(settings, "train"),
                      "training_set": read_provenance(training_set_path)})
    history: list[dict] = []
    start = 0
    checkpoint_path = Path(out.checkpoint)
    ck = load_checkpoint(checkpoint_path, run_hash, device)
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start, history = ck["epoch"], ck["history"]
        logger.info("resuming from checkpoint '%s' after epoch %d", checkpoint_path, start)

    n_par = sum(p.numel() for p in model.parameters())
    logger.info("training %d parameters (%s) on %s: %d epochs x %d steps of %d; %d training / %d validation waveforms",
                n_par, ", ".join(names), device, tr["epochs"], steps, B, len(train_idx), n_val)
    for epoch in range(start, tr["epochs"]):
        t0 = time.perf_counter()
        model.set_projection_trainable(epoch >= settings["model"]["embedding"]["freeze_epochs"])
        if bank is not None:
            sim.draw_asds = epoch >= int(nc["fixed_asd_epochs"])  # two-stage schedule: reference ASD, then the set
        train_loss = train_epoch(model, sim, data, train_idx, names, opt, sched, epoch=epoch, seed=seed, batch_size=B,
                                 gradient_clip=tr["gradient_clip"], amp=amp, device_type=device.type)
        val = evaluate(model, sim, data, val_idx, names, B, seed)
        wall = time.perf_counter() - t0
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "validation_loss": val,
            "learning_rate": sched.get_last_lr()[0],
            "wall_time": wall,
            "samples_per_second": len(train_idx) / wall,
        }
        history.append(row)
        logger.info("epoch %d/%d: train %.4f, validation %.4f, lr %.2e, %.1f s, %.0f samples/s",
                    row["epoch"], tr["epochs"], row["train_loss"], val, row["learning_rate"], wall, row["samples_per_second"])
        save_checkpoint(checkpoint_path, run_hash, epoch + 1, model, opt, sched, history)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, history)

    inputs = {"training_set": training_set_path, "basis": basis_path, **{f"psd_{k}": v for k, v in psd_paths.items()}}
    extra = {}
    if bank is not None:
        inputs["asd_dataset"] = asd_dataset_path
        # the span of the training ASDs, per detector and bin (gwnpe sample's out-of-training warning)
        extra["asd_range"] = np.quantile(bank, [0.005, 0.995], axis=1).astype(np.float32)
        extra["asd_dataset_training_size"] = int(bank.shape[1])
    prov = make_provenance("train", stage_settings(settings, "train"), inputs=inputs)
    model.cpu()
    save_model(out.model, model, prov,
                        extra={"asds": asds, "frequencies": domain.frequencies, "epochs_trained": len(history),
                      # the basis its training set was compressed with: per-event refinement simulates with it
                      "basis_V": basis.V.astype(np.complex64), "asd_reference": basis.asd_reference, **extra})
    write_history(out.history, history)
    if out.throughput is not None:
        write_history(out.throughput, history, THROUGHPUT_COLUMNS)
    save_figure(loss_figure(history), out.plot, dpi=120)
    checkpoint_path.unlink(missing_ok=True)
    return history


def training_asds(path, settings: dict, domain) -> np.ndarray:
    """(n_det, M, n_bins) analysis ASDs (window factor folded in, as the fixed ones) of the training part
    of the ASD dataset, each detector cut to the smallest detector's count.

    Raises
    ------
    GwnpeError
        If no dataset is given, it lacks a detector, lies on another frequency grid, or leaves no
        training ASD after the held-out part.
    """
    from ..products.asd_dataset import read_asd_part

    asds, _ = read_asd_part(path, list(settings["detectors"]), domain.frequencies,
                            settings["model"]["noise_conditioning"]["held_out_fraction"], "training")
    return np.stack([np.sqrt(analysis_psd(a**2, settings["domain"])) for a in asds.values()])
