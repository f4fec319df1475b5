rule importance_sampling:
    """NPE samples of one compared injection reweighted with the exact bilby likelihood (NPE+IS)."""
    input:
        model=results("model/model.pt"),
        injections=results("injections/injections.h5"),
    output:
        result=results("importance_sampling/injection_{i}.hdf5"),
    params:
        settings=settings("importance_sampling"),
        section="comparison",
        code=code("importance_sampling"),
    log:
        logs("importance_sampling/injection_{i}.log"),
    benchmark:
        benchmarks("importance_sampling/injection_{i}.tsv")
    # batches to a target ESS compute their likelihoods on a dask cluster of this many workers
    threads: 2 if config["comparison"]["target_ess"] else 1
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/importance_sampling.py"


rule compare:
    """JS divergences (NPE and NPE+IS vs bilby), log Bayes factors and wall-time ratios."""
    input:
        bilby=expand(results("bilby/injection_{i}/run_{r}/result.hdf5"), i=COMPARED, r=REFERENCE_RUNS),
        npe_is=expand(results("importance_sampling/injection_{i}.hdf5"), i=COMPARED),
    output:
        jsd=results("comparison/jsd.csv"),
        summary=results("comparison/summary.json"),
        jsd_table=report(results("comparison/jsd_table.csv"), caption="../report/jsd.rst", category="Comparison with Bilby"),
        times=report(results("comparison/times.csv"), caption="../report/time_ratio.rst", category="Comparison with Bilby"),
        evidence=report(results("comparison/evidence.csv"), caption="../report/evidence.rst", category="Comparison with Bilby"),
    params:
        settings=settings("compare"),
        indices=COMPARED,
        runs=len(REFERENCE_RUNS),
        code=code("compare"),
    log:
        logs("compare.log"),
    benchmark:
        benchmarks("compare.tsv")
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/compare.py"


rule compare_corner:
    """Corner overlay of bilby, NPE and NPE+IS posteriors of one compared injection."""
    input:
        bilby=results("bilby/injection_{i}/run_0/result.hdf5"),
        npe_is=results("importance_sampling/injection_{i}.hdf5"),
    output:
        plot=report(
            results("comparison/corner_{i}.png"),
            caption="../report/compare_corner.rst",
            category="Comparison with Bilby",
            labels={"injection": "{i}"},
        ),
    params:
        code=code("compare_corner"),
    log:
        logs("compare_corner/{i}.log"),
    benchmark:
        benchmarks("compare_corner/{i}.tsv")
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/compare_corner.py"
