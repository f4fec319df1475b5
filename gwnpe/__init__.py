"""gwnpe: amortized neural posterior estimation for compact-binary gravitational-wave signals.

Library layers follow the data flow and never import upwards:
config/priors -> domain -> waveforms -> psd (noise) -> bank -> svd -> training_set -> io/provenance.
"""

__version__ = "0.1.0"
