from _helpers import configure_logging

from gwnpe.stages.accuracy import run_accuracy_stage

configure_logging(snakemake)  # noqa: F821
run_accuracy_stage(
    snakemake.params.settings,  # noqa: F821
    indices=list(snakemake.params.indices),  # noqa: F821
    paths=list(snakemake.input.results),  # noqa: F821
    out_csv=snakemake.output.table,  # noqa: F821
    out_json=snakemake.output.summary,  # noqa: F821
    out_plot=snakemake.output.plot,  # noqa: F821
)
