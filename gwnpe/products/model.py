"""Model files (``model.pt``) and training checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import provenance
from ..errors import ModelError

MODEL_FORMAT = 1
CHECKPOINT_FORMAT = 1

logger = logging.getLogger(__name__)


def save_model(path: str | Path, model, prov: dict, extra: dict | None = None) -> None:
    """Save weights, the settings that rebuild the model, and provenance (atomically)."""
    import torch

    obj = {
        "format": MODEL_FORMAT,
        "settings": model.settings,
        "state_dict": model.state_dict(),
        "provenance": prov,
        **(extra or {}),
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
    if not path.is_file():
        raise ModelError(f"model file '{path}' does not exist; run the train stage first.")
    try:
        obj = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:
        raise ModelError(
            f"model file '{path}' is unreadable or truncated ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "delete it and rerun the train stage, or restore it."
        ) from exc
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
    model.extra = {k: v for k, v in obj.items() if k not in ("state_dict", "settings", "provenance", "format")}
    return model.to(device).eval()


def save_checkpoint(path, run_hash: str, epoch: int, model, optimizer, scheduler, history: list[dict]) -> None:
    """Training state after ``epoch`` epochs, tagged with the run's settings hash (atomically)."""
    import torch

    with provenance.atomic_output(path) as tmp, open(tmp, "wb") as fh:
        torch.save({"format": CHECKPOINT_FORMAT, "run_hash": run_hash, "epoch": epoch, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "history": history}, fh)


def load_checkpoint(path, run_hash: str, device="cpu") -> dict | None:
    """The checkpoint at ``path`` if it exists and belongs to ``run_hash``; else None (a foreign one is named in a warning)."""
    path = Path(path)
    if not path.is_file():
        return None
    import torch

    ck = torch.load(path, map_location=device, weights_only=False)
    if ck.get("format") == CHECKPOINT_FORMAT and ck.get("run_hash") == run_hash:
        return ck
    logger.warning("ignoring checkpoint '%s': it belongs to other settings or inputs", path)
    return None
