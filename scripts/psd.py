from _helpers import configure_logging

from gwnpe.psd import run_psd_stage

configure_logging(snakemake)  # noqa: F821
run_psd_stage(
    snakemake.wildcards.ifo,  # noqa: F821
    snakemake.params.settings,  # noqa: F821
    out_psd=snakemake.output.psd,  # noqa: F821
    out_plot=snakemake.output.plot,  # noqa: F821
)
