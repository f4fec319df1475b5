"""Every exception and warning of gwnpe, in one place.

User-facing errors derive from :class:`GwnpeError`; their messages name the culprit (file, key,
line, index) and say how to fix it. The command line and the rule scripts print such an error's
message without a traceback.
"""


class GwnpeError(Exception):
    """Base class: a user-facing error whose message says what is wrong and how to fix it."""


class ConfigError(GwnpeError):
    """A configuration key, type, range or cross-setting is invalid."""


class PriorError(GwnpeError):
    """A prior file is missing, unreadable or inconsistent with the waveform model."""


class StrainError(GwnpeError):
    """Strain data is missing, corrupt, non-finite or has gaps."""


class WaveformError(GwnpeError):
    """Too many waveforms were refused by LAL or came back non-finite."""


class WaveformFailure(Exception):
    """LAL refused one parameter set, or returned non-finite values (caught and redrawn, never user-facing)."""


class BasisError(GwnpeError):
    """The reduced basis does not meet its tolerance or cannot be built."""


class ModelError(GwnpeError):
    """A model file is missing or unreadable, or the model is given input it was not built for."""


class TrainingSetError(GwnpeError):
    """A training-set chunk failed after its retries, or a training-set or chunk file is inconsistent."""


class ClusterError(GwnpeError):
    """A dask cluster could not be started or reached."""


class InferenceError(GwnpeError):
    """Strain, PSD or model do not fit together."""


class InjectionError(GwnpeError):
    """An injection file or index is invalid."""


class ComparisonError(GwnpeError):
    """A compared injection does not exist, or the inputs of the comparison do not fit together."""


class OutputWriteError(GwnpeError, OSError):
    """An output could not be written: disk full, quota exceeded, no permission, read-only file
    system, or a file where a folder should be. The message names the output and what to do;
    ``errno`` is the original error's (also an :class:`OSError`, so ``except OSError`` still works).
    """


class ImportanceSamplingWarning(UserWarning):
    """The NPE proposal covers the posterior poorly: few samples carry the weight."""
