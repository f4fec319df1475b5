from pathlib import Path

from _helpers import configure_logging

from gwnpe.stages.compare import run_compare_stage

configure_logging(snakemake)  # noqa: F821
run_compare_stage(
    snakemake.params.settings,  # noqa: F821
    indices=list(snakemake.params.indices),  # noqa: F821
    bilby_paths=list(snakemake.input.bilby),  # noqa: F821
    is_paths=list(snakemake.input.npe_is),  # noqa: F821
    out_dir=Path(snakemake.output.summary).parent,  # noqa: F821
)
