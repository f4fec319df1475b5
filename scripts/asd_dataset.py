from _helpers import configure_logging

from gwnpe.stages.asd_dataset import run_asd_dataset_stage
from gwnpe.stages.settings import with_runtime

configure_logging(snakemake)  # noqa: F821
run_asd_dataset_stage(
    with_runtime(snakemake.params.settings, snakemake.config, "asd_dataset"),  # noqa: F821
    out_path=snakemake.output.dataset,  # noqa: F821
    plot_path=snakemake.output.plot,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
