"""Diagnostics: PP-tests (calibration) and, later, posterior comparisons."""

from .pp import credible_levels, pp_test, run_pp_stage

__all__ = ["credible_levels", "pp_test", "run_pp_stage"]
