rule train:
    """Train the embedding + spline flow on data made on the fly; resumes from its checkpoint when rerun."""
    input:
        training_set=results("training_set/training_set.h5"),
        basis=results("svd/basis.h5"),
        psds=get_psd_files(),
        priors=get_prior_file,
        asd_dataset=get_train_asd_dataset,
    output:
        model=results("model/model.pt"),
        history=results("model/history.csv"),
        throughput=results("model/throughput.csv"),
        plot=report(
            results("model/loss.png"),
            caption="../report/loss.rst",
            category="Training",
        ),
    params:
        settings=settings("train"),
        checkpoint=results("model/checkpoint.pt"),
        code=code("train"),
    log:
        logs("train.log"),
    benchmark:
        benchmarks("train.tsv")
    threads: 2
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/train.py"
