"""gwnpe: amortized neural posterior estimation for compact-binary gravitational-wave signals.

Layers, each importing only from those below it (``tests/test_layers.py`` keeps it so)::

    errors, seeding, provenance, config      foundations
    gw/                                      physics: domain, priors, waveforms, detectors, noise, svd,
                                             strain files, bilby likelihoods
    nn/                                      networks: embedding, flow model, simulator, training loop
    inference/   diagnostics/                sampling, importance sampling | PP, JSD, comparison, figures
    products                                 every stage file's reader and writer
    stages/                                  one module per stage, and the settings table
    cli                                      the ``gwnpe`` command
"""

__version__ = "0.1.0"
