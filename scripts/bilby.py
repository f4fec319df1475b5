import contextlib
import logging

from _helpers import LoggerStream, configure_logging

from gwnpe.stages.bilby import run_bilby_stage
from gwnpe.stages.settings import with_runtime

log = configure_logging(snakemake)  # noqa: F821
# bilby's own messages and dynesty's progress lines (printed to stdout) belong in this rule's log
bilby_logger = logging.getLogger("bilby")
bilby_logger.setLevel(logging.INFO)
for handler in logging.getLogger().handlers:
    if isinstance(handler, logging.FileHandler):
        bilby_logger.addHandler(handler)
lookup = list(getattr(snakemake.input, "distance_lookup", None) or [])  # noqa: F821
with contextlib.redirect_stdout(LoggerStream(logging.getLogger("gwnpe.dynesty"))):
    run_bilby_stage(
        with_runtime(snakemake.params.settings, snakemake.config, "bilby"),  # noqa: F821
        injections_path=snakemake.input.injections,  # noqa: F821
        index=int(snakemake.wildcards.i),  # noqa: F821
        run=int(snakemake.wildcards.r),  # noqa: F821
        distance_lookup=lookup[0] if lookup else None,
        out_path=snakemake.output.result,  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
    )
