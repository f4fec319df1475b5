rule asd_dataset:
    """Many Welch ASDs per detector (simulated variants of the noise curve, or windows of strain files),
    the noise a noise-conditioned network trains over, and a plot of their spread."""
    input:
        strain=get_asd_dataset_strain,
    output:
        dataset=results("asd_dataset/asd_dataset.h5"),
        plot=report(results("asd_dataset/asd_spread.png"), caption="../report/asd_dataset.rst", category="Noise"),
    params:
        settings=settings("asd_dataset"),
        code=code("asd_dataset"),
    log:
        logs("asd_dataset.log"),
    benchmark:
        benchmarks("asd_dataset.tsv")
    # ASDs computed on a dask cluster of this many workers
    threads: 2
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/asd_dataset.py"
