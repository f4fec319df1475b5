rule psd:
    """Welch PSD per detector from strain next to (before) the analysed segment."""
    input:
        strain=get_strain_input,
    output:
        psd=results("psd/{ifo}_psd.txt"),
        plot=report(
            results("psd/{ifo}_psd.png"),
            caption="../report/psd.rst",
            category="Noise",
            labels={"detector": "{ifo}"},
        ),
    params:
        settings=settings("psd"),
        code=code("psd"),
    log:
        logs("psd/{ifo}.log"),
    benchmark:
        benchmarks("psd/{ifo}.tsv")
    threads: 1
    conda:
        "../envs/gwnpe.yaml"
    script:
        "../scripts/psd.py"
