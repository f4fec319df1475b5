rule svd:
    """Reduced basis by randomized SVD of whitened, time-shifted bank waveforms; validated on held-out ones."""
    input:
        bank=results("bank/bank.h5"),
        psds=get_psd_files(),
        priors=get_prior_file,
    output:
        basis=results("svd/basis.h5"),
        plot=report(
            results("svd/mismatch.png"),
            caption="../report/svd.rst",
            category="Reduced basis",
        ),
    params:
        settings=settings("svd"),
        code=code("svd"),
    log:
        logs("svd.log"),
    benchmark:
        benchmarks("svd.tsv")
    threads: 2
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/svd.py"
