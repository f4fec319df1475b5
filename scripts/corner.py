from _helpers import configure_logging

from gwnpe.stages.report import plot_corner

configure_logging(snakemake)  # noqa: F821
plot_corner(snakemake.input.posterior, snakemake.output.plot)  # noqa: F821
