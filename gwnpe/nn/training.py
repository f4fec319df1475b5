"""The training loop of the NPE model: one epoch of AdamW steps on data made on the fly, validation, device.

Determinism: every epoch draws its batches, extrinsic parameters and noise from a generator
seeded by (seed, epoch), and validation always uses the same draws. A run resumed after epoch k
therefore continues exactly as an uninterrupted run would (on the CPU the final weights are
identical). Checkpoints, histories and the model file are the train stage's
(:mod:`gwnpe.stages.train`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import GwnpeError
from ..gw.priors import draw
from ..seeding import stage_seed_sequence
from .simulator import Simulator, TrainingData


def select_device(requested: str) -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cuda`` without a visible GPU is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise GwnpeError("training.device is 'cuda' but no CUDA GPU is visible; use 'auto' or 'cpu', or run on a GPU node.")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def torch_seed(seed: int, name: str, *extra: int) -> int:
    """A torch seed for stream ``name`` (and e.g. an epoch) derived from the config's master seed."""
    return int(stage_seed_sequence(seed, name, *extra).generate_state(1, np.uint64)[0] % (2**63 - 1))


def prior_standardisation(priors, keys: list[str], seed: int, n: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each parameter under the prior (from ``n`` seeded draws)."""
    s = draw(priors, keys, n, np.random.default_rng(stage_seed_sequence(seed, "standardisation")))
    x = np.stack([s[k] for k in keys], axis=1)
    return x.mean(axis=0), x.std(axis=0)


@torch.no_grad()
def evaluate(model, sim: Simulator, data: TrainingData, index: torch.Tensor, names: list[str], batch_size: int, seed: int) -> float:
    """Mean validation loss on fixed draws (the same every epoch)."""
    model.eval()
    g = torch.Generator().manual_seed(torch_seed(seed, "validation"))
    total, count = 0.0, 0
    for i in range(0, len(index), batch_size):
        idx = index[i : i + batch_size]
        total += float(model.loss(**sim.loss_inputs(data, idx, names, g))) * len(idx)
        count += len(idx)
    return total / max(count, 1)


def train_epoch(model, sim: Simulator, data: TrainingData, train_idx: torch.Tensor, names: list[str], optimizer,
                scheduler, *, epoch: int, seed: int, batch_size: int, gradient_clip: float | None = None,
                amp: bool = False, device_type: str = "cpu") -> float:
    """One epoch (0-based ``epoch``) over ``train_idx`` in a seeded random order; returns the mean training loss.

    The scheduler steps once per batch. ``amp`` runs the forward pass in bfloat16 autocast (CUDA).

    Raises
    ------
    GwnpeError
        If the loss becomes non-finite (the message advises a lower learning rate).
    """
    g = torch.Generator().manual_seed(torch_seed(seed, "epoch", epoch))
    torch.manual_seed(torch_seed(seed, "dropout", epoch))
    perm = train_idx[torch.randperm(len(train_idx), generator=g)]
    model.train()
    total = 0.0
    for i in range(math.ceil(len(train_idx) / batch_size)):
        idx = perm[i * batch_size : (i + 1) * batch_size]
        batch = sim.loss_inputs(data, idx, names, g)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
            loss = model.loss(**batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if gradient_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), gradient_clip)
        optimizer.step()
        scheduler.step()
        total += float(loss.detach()) * len(idx)
        if not math.isfinite(total):
            raise GwnpeError(f"training loss became {float(loss.detach())} at epoch {epoch + 1}, step {i + 1}; "
                             "lower training.learning_rate.")
    return total / len(train_idx)
