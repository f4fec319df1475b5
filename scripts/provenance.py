from _helpers import configure_logging

from gwnpe.stages.report import write_provenance_table

configure_logging(snakemake)  # noqa: F821
write_provenance_table(snakemake.params.config, snakemake.output.table)  # noqa: F821
