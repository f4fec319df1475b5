from _helpers import configure_logging

from gwnpe.stages.psd import run_psd_stage
from gwnpe.stages.settings import with_runtime

configure_logging(snakemake)  # noqa: F821
run_psd_stage(
    snakemake.wildcards.ifo,  # noqa: F821
    with_runtime(snakemake.params.settings, snakemake.config, "psd"),  # noqa: F821
    out_psd=snakemake.output.psd,  # noqa: F821
    out_plot=snakemake.output.plot,  # noqa: F821
)
