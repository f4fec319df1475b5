from _helpers import configure_logging

from gwnpe.stages.events import plot_event

configure_logging(snakemake)  # noqa: F821
plot_event(snakemake.input.result, snakemake.output.plot)  # noqa: F821
