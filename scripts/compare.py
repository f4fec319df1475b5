from pathlib import Path

from _helpers import configure_logging

from gwnpe.comparison import run_compare_stage

configure_logging(snakemake)  # noqa: F821
run_compare_stage(
    snakemake.params.settings,  # noqa: F821
    list(snakemake.params.indices),  # noqa: F821
    list(snakemake.input.bilby),  # noqa: F821
    list(snakemake.input.npe_is),  # noqa: F821
    Path(snakemake.output.summary).parent,  # noqa: F821
)
