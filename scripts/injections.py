from _helpers import configure_logging

from gwnpe.stages.injections import run_injections_stage

configure_logging(snakemake)  # noqa: F821
settings = snakemake.params.settings  # noqa: F821
run_injections_stage(
    settings,
    psd_paths=dict(zip(settings["detectors"], snakemake.input.psds)),  # noqa: F821
    out_path=snakemake.output.injections,  # noqa: F821
    asd_dataset_path=getattr(snakemake.input, "asd_dataset", None) or None,  # noqa: F821
)
