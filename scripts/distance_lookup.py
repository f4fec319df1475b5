from _helpers import configure_logging

from gwnpe.stages.bilby import run_distance_lookup_stage

configure_logging(snakemake)  # noqa: F821
run_distance_lookup_stage(snakemake.params.settings, out_path=snakemake.output.table)  # noqa: F821
