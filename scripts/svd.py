from _helpers import configure_logging

from gwnpe.stages.svd import run_svd_stage

configure_logging(snakemake)  # noqa: F821
settings = snakemake.params.settings  # noqa: F821
run_svd_stage(
    settings,
    bank_path=snakemake.input.bank,  # noqa: F821
    psd_paths=dict(zip(settings["detectors"], snakemake.input.psds)),  # noqa: F821
    out_path=snakemake.output.basis,  # noqa: F821
    plot_path=snakemake.output.plot,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
