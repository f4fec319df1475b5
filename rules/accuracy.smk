rule accuracy_sampling:
    """NPE samples of one campaign injection importance-sampled to the accuracy campaign's target ESS."""
    input:
        model=results("model/model.pt"),
        injections=results("injections/injections.h5"),
    output:
        result=results("accuracy/injection_{i}.hdf5"),
    params:
        settings=settings("accuracy_sampling"),
        section="accuracy",
        code=code("accuracy_sampling"),
    log:
        logs("accuracy/injection_{i}.log"),
    benchmark:
        benchmarks("accuracy/injection_{i}.tsv")
    # likelihoods of each batch on a dask cluster of this many workers
    threads: 2
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/importance_sampling.py"


rule accuracy:
    """Table and histogram of the accuracy campaign: efficiency, ESS, Pareto k-hat and time per event."""
    input:
        results=get_accuracy_results,
    output:
        table=report(results("accuracy/accuracy.csv"), caption="../report/accuracy.rst", category="Accuracy"),
        summary=results("accuracy/summary.json"),
        plot=report(results("accuracy/efficiency.png"), caption="../report/accuracy.rst", category="Accuracy"),
    params:
        settings=settings("accuracy"),
        indices=get_accuracy_indices,
        code=code("accuracy"),
    log:
        logs("accuracy.log"),
    benchmark:
        benchmarks("accuracy.tsv")
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/accuracy.py"
