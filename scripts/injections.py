from _helpers import configure_logging

from gwnpe.injections import run_injections_stage

configure_logging(snakemake)  # noqa: F821
settings = snakemake.params.settings  # noqa: F821
run_injections_stage(settings, dict(zip(settings["detectors"], snakemake.input.psds)), snakemake.output.injections)  # noqa: F821
