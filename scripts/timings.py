from _helpers import configure_logging

from gwnpe.stages.report import write_timings

configure_logging(snakemake)  # noqa: F821
write_timings(list(snakemake.input.benchmarks), snakemake.input.pp, snakemake.input.throughput, snakemake.output.table)  # noqa: F821
