"""Posterior sampling with a trained model; results as bilby Result files."""

from .sampling import (
    InferenceError,
    read_fd_strain,
    sample_posterior,
    sample_whitened,
    save_result,
    strain_from_time_domain,
    write_fd_strain,
)

__all__ = [
    "InferenceError",
    "read_fd_strain",
    "sample_posterior",
    "sample_whitened",
    "save_result",
    "strain_from_time_domain",
    "write_fd_strain",
]
