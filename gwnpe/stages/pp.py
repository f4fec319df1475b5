"""The pp stage: the PP-test over the campaign's posterior files (pp.json, pp.png, pvalues.csv)."""

from __future__ import annotations

import logging

from ..products.common import save_figure, write_json, write_text
from ..products.results import read_result
from ..diagnostics.plots import pp_figure
from ..diagnostics.pp import pp_summary
from ..errors import InjectionError

logger = logging.getLogger(__name__)


def run_pp_stage(posterior_paths: list, *, out_json, out_plot, out_table=None) -> dict:
    """PP-test over bilby Result files with injection parameters; writes pp.json, pp.png (and a CSV table).

    ``pp.json`` = {"n_injections", "pvalues", "combined_pvalue"} plus ``widths``: the median
    90% credible width of each parameter against its prior width (see :func:`gwnpe.diagnostics.pp.pp_summary`).
    """
    results = [read_result(p, "posterior", InjectionError) for p in posterior_paths]
    levels, out, labels = pp_summary(results)
    logger.info("PP-test over %d injections: combined p = %.3g; %s", out["n_injections"], out["combined_pvalue"],
                ", ".join(f"{k} {p:.3g}" for k, p in out["pvalues"].items()))
    write_json(out_json, out, indent=2)
    save_figure(pp_figure(levels, out, labels), out_plot, dpi=130)
    if out_table is not None:
        keys, widths = list(levels), out["widths"]
        lines = ["parameter,ks_pvalue,median_90_width,prior_width"]
        lines += [f"{k},{out['pvalues'][k]:.4g},{widths[k]['median_90_width']:.4g},{widths[k]['prior_width']:.4g}" for k in keys]
        lines.append(f"combined (Fisher),{out['combined_pvalue']:.4g},,")
        write_text(out_table, "\n".join(lines) + "\n")
    return out
