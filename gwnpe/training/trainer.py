"""Training loop: AdamW, cosine learning rate over all steps, validation split, per-epoch checkpoints.

Determinism: every epoch draws its batches, extrinsic parameters and noise from
a generator seeded by (seed, epoch), and validation always uses the same draws.
A run resumed from the checkpoint of epoch k therefore continues exactly as an
uninterrupted run would (on the CPU the final weights are identical).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import provenance
from ..config import config_subset
from ..data import Simulator, TrainingData
from ..domain import build_domain
from ..errors import GwnpeError
from ..nn.model import build_model, save_model
from ..priors import EXTRINSIC, draw, load_priors, sampled_keys
from ..psd import psd_on_domain
from ..seeding import stage_seed_sequence
from ..svd import load_basis

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


def train_settings(config: dict) -> dict:
    """The config subset that shapes the model."""
    return config_subset(config, "seed", "detectors", "trigger_time", "priors", "domain", "waveform", "model", "training")


def select_device(requested: str) -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cuda`` without a visible GPU is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise GwnpeError("training.device is 'cuda' but no CUDA GPU is visible; use 'auto' or 'cpu', or run on a GPU node.")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def _seed(seed: int, name: str, *extra: int) -> int:
    return int(stage_seed_sequence(seed, name, *extra).generate_state(1, np.uint64)[0] % (2**63 - 1))


def prior_standardisation(priors, keys: list[str], seed: int, n: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each parameter under the prior (from ``n`` seeded draws)."""
    s = draw(priors, keys, n, np.random.default_rng(stage_seed_sequence(seed, "standardisation")))
    x = np.stack([s[k] for k in keys], axis=1)
    return x.mean(axis=0), x.std(axis=0)


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@torch.no_grad()
def evaluate(model, sim: Simulator, data: TrainingData, index: torch.Tensor, names: list[str], batch_size: int, seed: int) -> float:
    """Mean validation loss on fixed draws (the same every epoch)."""
    model.eval()
    g = torch.Generator().manual_seed(_seed(seed, "validation"))
    total, count = 0.0, 0
    for i in range(0, len(index), batch_size):
        idx = index[i : i + batch_size]
        theta, d = sim.batch(data, idx, names, g)
        total += float(model.loss(theta, d)) * len(idx)
        count += len(idx)
    return total / max(count, 1)


def run_train_stage(
    settings: dict,
    training_set_path,
    basis_path,
    psd_paths: dict,
    out_model,
    out_history,
    out_plot,
    checkpoint_path,
    threads: int = 1,
    on_epoch_end: Callable[[int, list[dict]], None] | None = None,
    out_throughput=None,
) -> list[dict]:
    """Train the model; resume from ``checkpoint_path`` when it holds a run with the same settings.

    Writes ``out_model`` (weights, settings, provenance), ``out_history`` (CSV: epoch,
    train_loss, validation_loss, learning_rate; byte-identical for the same seed on the CPU),
    ``out_plot`` (loss curves) and, when given, ``out_throughput`` (CSV: epoch, wall_time [s],
    samples_per_second; machine-dependent, hence kept apart). Returns the history.
    """
    torch.set_num_threads(max(1, int(threads)))
    tr = settings["training"]
    seed = settings["seed"]
    device = select_device(tr["device"])
    domain = build_domain(settings)
    priors = load_priors(settings["priors"])
    names = sampled_keys(priors)
    data = TrainingData(training_set_path)
    missing = [k for k in names if k not in EXTRINSIC and k not in data.parameters]
    if missing:
        raise GwnpeError(
            f"training set '{training_set_path}' has no {', '.join(missing)}: it was made with another prior than "
            f"'{settings['priors']}'. Rerun the training_set stage."
        )
    basis = load_basis(basis_path)
    asds = np.sqrt([psd_on_domain(psd_paths[ifo], domain) for ifo in settings["detectors"]])
    sim = Simulator(basis.V, basis.asd_reference, asds, domain.frequencies, settings["detectors"],
                    settings["trigger_time"], priors, settings["waveform"]["reference_distance"]).to(device)

    n = len(data)
    n_val = max(1, int(round(tr["validation_fraction"] * n)))
    if n - n_val < 1:
        raise GwnpeError(f"training set of {n} waveforms leaves none for training after the validation split.")
    train_idx, val_idx = torch.arange(n - n_val), torch.arange(n - n_val, n)
    mean, std = prior_standardisation(priors, names, seed)
    model_settings = {
        "model": settings["model"],
        "parameters": names,
        "detectors": list(settings["detectors"]),
        "n_bins": len(domain),
        "basis_size": basis.size,
        "domain": settings["domain"],
        "trigger_time": settings["trigger_time"],
        "prior_file": Path(settings["priors"]).read_text(),
        "reference_distance": settings["waveform"]["reference_distance"],
        "waveform": dict(settings["waveform"]),  # for importance sampling with the exact likelihood
    }
    torch.manual_seed(_seed(seed, "init"))
    model = build_model(model_settings, torch.from_numpy(basis.V), mean, std).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=tr["learning_rate"], weight_decay=tr["weight_decay"])
    B = tr["batch_size"]
    steps = math.ceil(len(train_idx) / B)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, tr["epochs"] * steps))
    amp = bool(tr["mixed_precision"]) and device.type == "cuda"
    if tr["mixed_precision"] and not amp:
        logger.warning("training.mixed_precision ignored: it applies to CUDA only")

    run_hash = _hash({"settings": settings, "training_set": provenance.read_provenance(training_set_path)})
    history: list[dict] = []
    start = 0
    checkpoint_path = Path(checkpoint_path)
    if checkpoint_path.is_file():
        ck = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if ck.get("format") == CHECKPOINT_FORMAT and ck.get("run_hash") == run_hash:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            start, history = ck["epoch"], ck["history"]
            logger.info("resuming from checkpoint '%s' after epoch %d", checkpoint_path, start)
        else:
            logger.warning("ignoring checkpoint '%s': it belongs to other settings or inputs", checkpoint_path)

    n_par = sum(p.numel() for p in model.parameters())
    logger.info("training %d parameters (%s) on %s: %d epochs x %d steps of %d; %d training / %d validation waveforms",
                n_par, ", ".join(names), device, tr["epochs"], steps, B, len(train_idx), n_val)
    for epoch in range(start, tr["epochs"]):
        t0 = time.perf_counter()
        model.embedding.set_projection_trainable(epoch >= settings["model"]["embedding"]["freeze_epochs"])
        g = torch.Generator().manual_seed(_seed(seed, "epoch", epoch))
        torch.manual_seed(_seed(seed, "dropout", epoch))
        perm = train_idx[torch.randperm(len(train_idx), generator=g)]
        model.train()
        total = 0.0
        for i in range(steps):
            idx = perm[i * B : (i + 1) * B]
            theta, d = sim.batch(data, idx, names, g)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = model.loss(theta, d)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tr["gradient_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tr["gradient_clip"])
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            if not math.isfinite(total):
                raise GwnpeError(f"training loss became {float(loss.detach())} at epoch {epoch + 1}, step {i + 1}; lower training.learning_rate.")
        val = evaluate(model, sim, data, val_idx, names, B, seed)
        wall = time.perf_counter() - t0
        row = {
            "epoch": epoch + 1,
            "train_loss": total / len(train_idx),
            "validation_loss": val,
            "learning_rate": sched.get_last_lr()[0],
            "wall_time": wall,
            "samples_per_second": len(train_idx) / wall,
        }
        history.append(row)
        logger.info("epoch %d/%d: train %.4f, validation %.4f, lr %.2e, %.1f s, %.0f samples/s",
                    row["epoch"], tr["epochs"], row["train_loss"], val, row["learning_rate"], wall, row["samples_per_second"])
        with provenance.atomic_output(checkpoint_path) as tmp, open(tmp, "wb") as fh:
            torch.save({"format": CHECKPOINT_FORMAT, "run_hash": run_hash, "epoch": epoch + 1, "model": model.state_dict(),
                        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "history": history}, fh)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, history)

    prov = provenance.make_provenance("train", settings, inputs={"training_set": training_set_path, "basis": basis_path,
                                                                 **{f"psd_{k}": v for k, v in psd_paths.items()}})
    model.cpu()
    save_model(out_model, model, prov, extra={"asds": asds, "frequencies": domain.frequencies, "epochs_trained": len(history)})
    write_history(out_history, history)
    if out_throughput is not None:
        write_history(out_throughput, history, THROUGHPUT_COLUMNS)
    plot_history(out_plot, history)
    checkpoint_path.unlink(missing_ok=True)
    return history


HISTORY_COLUMNS = ("epoch", "train_loss", "validation_loss", "learning_rate")
THROUGHPUT_COLUMNS = ("epoch", "wall_time", "samples_per_second")


def write_history(path, history: list[dict], columns=HISTORY_COLUMNS) -> None:
    with provenance.atomic_output(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            for row in history:
                w.writerow({k: row[k] for k in columns})


def plot_history(path, history: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if history:
        ep = [r["epoch"] for r in history]
        ax.plot(ep, [r["train_loss"] for r in history], label="train")
        ax.plot(ep, [r["validation_loss"] for r in history], label="validation")
        ax2 = ax.twinx()
        ax2.semilogy(ep, [r["learning_rate"] for r in history], color="0.6", ls=":", label="learning rate")
        ax2.set_ylabel("learning rate")
        ax.legend(loc="upper right")
    else:
        ax.text(0.5, 0.5, "no epochs trained (training.epochs = 0)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (negative log density, standardised parameters)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with provenance.atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
