"""Model files (``model.pt``) and training checkpoints.

Models are shared between people (a trained network is the product), so a model file holds tensors
and plain data only (numbers, strings, lists, dicts: the settings that rebuild the model, its
provenance, its ASDs as tensors) and is read with ``torch.load(..., weights_only=True)``: a file
that carries any other Python object (a pickle that would run code) is refused, not unpickled.
Checkpoints are written and read the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import provenance
from ..errors import ModelError
from .common import safe_load

MODEL_FORMAT = 2  # 2: numpy arrays stored as tensors, read with weights_only=True
CHECKPOINT_FORMAT = 1

logger = logging.getLogger(__name__)


def _plain(value):
    """numpy arrays as tensors (what weights_only loading accepts), recursively in dicts and lists."""
    import numpy as np
    import torch

    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def refined_model_path(result_path) -> Path:
    """Where a per-event refined network is written: beside its result (``post.hdf5`` ->
    ``post.refined.pt``), by the accuracy stage and by ``gwnpe sample --refine``."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.stem + ".refined.pt")


def save_model(path: str | Path, model, prov: dict, extra: dict | None = None) -> None:
    """Save weights, the settings that rebuild the model, and provenance (atomically).

    ``extra`` entries (e.g. the ASDs) may be numpy arrays: they are stored as tensors and
    :func:`load_model` returns them as numpy arrays in ``model.extra``.
    """
    import torch

    obj = {
        "format": MODEL_FORMAT,
        "settings": model.settings,
        "state_dict": model.state_dict(),
        "provenance": prov,
        "extra": _plain(dict(extra or {})),
    }
    with provenance.atomic_output(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)  # through a file object, a full disk raises OSError(ENOSPC), not a zip RuntimeError


def load_model(path: str | Path, device="cpu"):
    """Rebuild a saved :class:`~gwnpe.nn.model.NPEModel` on ``device`` (eval mode).

    Raises
    ------
    ModelError
        If the file is missing, unreadable (e.g. truncated), not a gwnpe model, or its weights do
        not fit the settings stored with them; the message names the file and the train stage.
    """
    import torch

    from ..nn.model import build_model

    path = Path(path)
    if path.is_dir():
        raise ModelError(f"model file '{path}' is a directory; pass the model.pt inside it (the train stage writes "
                         "results/<run>/model/model.pt).")
    if not path.is_file():
        raise ModelError(f"model file '{path}' does not exist; run the train stage first.")
    obj = safe_load(path, device)
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ModelError(
            f"'{path}' is not a gwnpe model file (format {MODEL_FORMAT}, found {found!r}); pass the model.pt "
            "written by the train stage (results/<run>/model/model.pt), or rerun that stage."
        )
    try:
        model = build_model(obj["settings"])
        model.load_state_dict(obj["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise ModelError(
            f"model file '{path}' is incomplete or its weights do not fit its settings ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}); delete it and rerun the train stage."
        ) from exc
    model.provenance = obj.get("provenance")
    model.extra = {k: v.cpu().numpy() if isinstance(v, torch.Tensor) else v for k, v in obj.get("extra", {}).items()}
    return model.to(device).eval()


def save_checkpoint(path, run_hash: str, epoch: int, model, optimizer, scheduler, history: list[dict]) -> None:
    """Training state after ``epoch`` epochs, tagged with the run's settings hash (atomically)."""
    import torch

    with provenance.atomic_output(path) as tmp, open(tmp, "wb") as fh:
        torch.save({"format": CHECKPOINT_FORMAT, "run_hash": run_hash, "epoch": epoch, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "history": history}, fh)


def load_checkpoint(path, run_hash: str, device="cpu") -> dict | None:
    """The checkpoint at ``path`` if it exists and belongs to ``run_hash``; else None (a foreign one is named in a warning).

    Raises
    ------
    ModelError
        If the file holds anything but tensors and plain data (see :func:`safe_load`).
    """
    path = Path(path)
    if not path.is_file():
        return None
    ck = safe_load(path, device, what="checkpoint", fix="delete the checkpoint to train from the start")
    if ck.get("format") == CHECKPOINT_FORMAT and ck.get("run_hash") == run_hash:
        return ck
    logger.warning("ignoring checkpoint '%s': it belongs to other settings or inputs", path)
    return None
