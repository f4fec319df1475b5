from _helpers import configure_logging, progress_enabled

from gwnpe.stages.bank import run_bank_stage

configure_logging(snakemake)  # noqa: F821
run_bank_stage(snakemake.params.settings, out_path=snakemake.output.bank, progress=progress_enabled())  # noqa: F821
