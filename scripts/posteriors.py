from _helpers import configure_logging

from gwnpe.injections import run_posteriors_stage

configure_logging(snakemake)  # noqa: F821
run_posteriors_stage(
    snakemake.input.model,  # noqa: F821
    snakemake.input.injections,  # noqa: F821
    list(snakemake.output.posteriors),  # noqa: F821
    n_samples=snakemake.params.n_samples,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    batch_events=snakemake.params.batch_events,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
