from _helpers import configure_logging

from gwnpe.diagnostics.pp import run_pp_stage

configure_logging(snakemake)  # noqa: F821
run_pp_stage(list(snakemake.input.posteriors), snakemake.output.json, snakemake.output.plot, snakemake.output.table)  # noqa: F821
