from _helpers import configure_logging

from gwnpe.stages.pp import run_pp_stage

configure_logging(snakemake)  # noqa: F821
run_pp_stage(
    list(snakemake.input.posteriors),  # noqa: F821
    out_json=snakemake.output.json,  # noqa: F821
    out_plot=snakemake.output.plot,  # noqa: F821
    out_table=snakemake.output.table,  # noqa: F821
)
