"""Glue shared by the rule scripts: logging to the rule's log and uncaught errors to it too."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

# Make the checkout's gwnpe importable also in a `--sdm conda` environment without an install.
import os

os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # dask otherwise logs every worker start at INFO
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def configure_logging(snakemake, level=logging.INFO) -> logging.Logger:
    """Send Python logging (and uncaught exceptions) to ``snakemake.log[0]`` and stderr."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if len(snakemake.log):
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    for noisy in ("bilby", "distributed", "matplotlib", "fsspec", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def excepthook(exc_type, exc, tb):
        from gwnpe.errors import GwnpeError

        log = logging.getLogger(f"gwnpe.rule.{snakemake.rule}")
        if isinstance(exc, GwnpeError):
            log.error("%s", exc)  # a user error: the message says what to fix
        else:
            log.error("uncaught exception", exc_info=(exc_type, exc, tb))
        sys.__excepthook__(exc_type, exc, tb)

    sys.excepthook = excepthook
    return logging.getLogger(f"gwnpe.rule.{snakemake.rule}")


def progress_enabled() -> bool:
    """Progress bars only on an interactive terminal (they would flood log files)."""
    return sys.stderr.isatty()


class LoggerStream:
    """File-like object sending each printed line to a logger (for libraries that print progress)."""

    def __init__(self, logger: logging.Logger, level=logging.INFO):
        self.logger, self.level = logger, level

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.logger.log(self.level, line.rstrip())
        return len(text)

    def flush(self) -> None:
        pass
