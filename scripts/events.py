from _helpers import configure_logging

from gwnpe.stages.events import run_events_table_stage

configure_logging(snakemake)  # noqa: F821
run_events_table_stage(
    snakemake.params.settings,  # noqa: F821
    names=list(snakemake.params.names),  # noqa: F821
    paths=list(snakemake.input.results),  # noqa: F821
    out_csv=snakemake.output.table,  # noqa: F821
)
