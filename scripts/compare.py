from pathlib import Path

from _helpers import configure_logging

from gwnpe.stages.compare import run_compare_stage

configure_logging(snakemake)  # noqa: F821


def by_injection(paths: list, runs: int) -> list[list]:
    """expand()'s order (injection-major, reference runs inner) as one list of runs per injection."""
    return [paths[j:j + runs] for j in range(0, len(paths), runs)]


run_compare_stage(
    snakemake.params.settings,  # noqa: F821
    indices=list(snakemake.params.indices),  # noqa: F821
    bilby_paths=by_injection(list(snakemake.input.bilby), snakemake.params.runs),  # noqa: F821
    is_paths=list(snakemake.input.npe_is),  # noqa: F821
    out_dir=Path(snakemake.output.summary).parent,  # noqa: F821
)
