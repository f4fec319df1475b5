from _helpers import configure_logging, progress_enabled

from gwnpe.stages.settings import with_runtime
from gwnpe.stages.training_set import run_training_set_stage

configure_logging(snakemake)  # noqa: F821
run_training_set_stage(
    with_runtime(snakemake.params.settings, snakemake.config, "training_set"),  # noqa: F821
    prior_path=snakemake.input.priors,  # noqa: F821
    basis_path=snakemake.input.basis,  # noqa: F821
    out_path=snakemake.output.training_set,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    progress=progress_enabled(),
)
