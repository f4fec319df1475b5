"""The detector frame of a trained network and of the event it is applied to.

A network is trained with detector responses at its run's ``trigger_time`` (the reference); applied to
an event at another GPS time (:func:`gwnpe.inference.sampling.at_gps_time`), the model's settings hold
the event's time as ``trigger_time``, the reference as ``reference_time`` and the right-ascension rotation
between the two frames as ``ra_offset``. Simulations (GNPE proxies, refinement) work in the network's
frame; the segment, priors, likelihood and results in the event's.
"""

from __future__ import annotations


def reference_time(model) -> float:
    """GPS time [s] of the detector frame the network was trained in (the run's ``trigger_time``)."""
    return float(model.settings.get("reference_time", model.settings["trigger_time"]))


def ra_offset(model) -> float:
    """Right-ascension rotation [rad] from the network's frame to the event's (0 at the reference time)."""
    return float(model.settings.get("ra_offset", 0.0))
