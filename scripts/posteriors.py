from _helpers import configure_logging

from gwnpe.stages.posteriors import run_posteriors_stage

configure_logging(snakemake)  # noqa: F821
run_posteriors_stage(
    snakemake.params.settings,  # noqa: F821
    model_path=snakemake.input.model,  # noqa: F821
    injections_path=snakemake.input.injections,  # noqa: F821
    out_paths=list(snakemake.output.posteriors),  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
