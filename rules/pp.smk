rule pp:
    """PP-test: credible levels of the true values, KS p-values, Fisher's combined p-value."""
    input:
        posteriors=get_posterior_files(),
    output:
        json=results("pp/pp.json"),
        plot=report(results("pp/pp.png"), caption="../report/pp.rst", category="Calibration"),
        table=report(results("pp/pvalues.csv"), caption="../report/pvalues.rst", category="Calibration"),
    params:
        code=code("pp"),
    log:
        logs("pp.log"),
    benchmark:
        benchmarks("pp.tsv")
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/pp.py"


rule timings:
    """Table of per-stage wall times (Snakemake benchmarks) and NPE inference time per event."""
    input:
        benchmarks=get_timed_benchmarks,
        pp=results("pp/pp.json"),
        throughput=results("model/throughput.csv"),
    output:
        table=report(results("report/timings.csv"), caption="../report/timings.rst", category="Timing"),
    params:
        code=code("timings"),
    log:
        logs("timings.log"),
    benchmark:
        benchmarks("timings.tsv")
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/timings.py"


rule provenance:
    """Config, package versions and gwnpe's git commit, for the report."""
    output:
        table=report(results("report/provenance.csv"), caption="../report/provenance.rst", category="Provenance"),
    params:
        config=settings("provenance"),
        code=code("provenance"),
    log:
        logs("provenance.log"),
    benchmark:
        benchmarks("provenance.tsv")
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/provenance.py"
