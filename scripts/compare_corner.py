from _helpers import configure_logging

from gwnpe.stages.compare import plot_overlay

configure_logging(snakemake)  # noqa: F821
plot_overlay(snakemake.input.bilby, snakemake.input.npe_is, snakemake.output.plot)  # noqa: F821
