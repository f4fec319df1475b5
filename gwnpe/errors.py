"""Exceptions that name the culprit and how to fix it."""


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


class BasisError(GwnpeError):
    """The reduced basis does not meet its tolerance or cannot be built."""


class ModelError(GwnpeError):
    """A model file is missing or unreadable, or the model is given input it was not built for."""
