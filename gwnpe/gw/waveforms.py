"""Frequency-domain polarizations from LALSimulation, through bilby's source functions.

Using bilby's ``lal_binary_black_hole`` (rather than calling LAL ourselves) keeps
the conventions (phase, reference frequency, spin frames, frequency mask)
identical to those of the bilby likelihood that gwnpe is compared with.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, PriorError, WaveformError, WaveformFailure
from .domain import FrequencyDomain, build_domain
from .priors import MASS_PARAMETERS, _is_constraint, _is_fixed, draw, fixed_parameters, geocent_time_range

logger = logging.getLogger(__name__)

#: Arguments of :func:`bilby.gw.source.lal_binary_black_hole` besides frequencies and distance.
LAL_ARGS = ("mass_1", "mass_2", "a_1", "tilt_1", "phi_12", "a_2", "tilt_2", "phi_jl", "theta_jn", "phase")


@dataclass(frozen=True)
class WaveformGenerator:
    """Polarizations h+ and hx [1/Hz] on the domain's band at a reference distance.

    Parameters
    ----------
    domain : FrequencyDomain
    approximant : str
        LALSimulation frequency-domain approximant.
    reference_frequency : float
        [Hz]
    reference_distance : float
        Luminosity distance [Mpc] of the returned waveforms.
    """

    domain: FrequencyDomain
    approximant: str
    reference_frequency: float
    reference_distance: float

    def settings(self) -> dict:
        return {
            "approximant": self.approximant,
            "reference_frequency": self.reference_frequency,
            "reference_distance": self.reference_distance,
            "domain": self.domain.settings(),
        }

    def to_lal(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Convert sampled parameters (any bilby parameterisation) to LAL's, as arrays."""
        from bilby.gw.conversion import convert_to_lal_binary_black_hole_parameters

        n = len(next(iter(params.values())))
        conv, _ = convert_to_lal_binary_black_hole_parameters({k: np.asarray(v, float) for k, v in params.items()})
        out = {}
        for key in LAL_ARGS:
            if key not in conv:
                if key in ("theta_jn", "phase"):
                    raise WaveformError(f"parameter '{key}' is missing: add it to the prior file (fixed or sampled).")
                conv[key] = 0.0
            out[key] = np.broadcast_to(np.asarray(conv[key], float), (n,)).copy()
        return out

    def _call_lal(self, lal_params: dict[str, float]) -> dict:
        from bilby.gw.source import lal_binary_black_hole

        return lal_binary_black_hole(
            self.domain.full_frequencies,
            luminosity_distance=self.reference_distance,
            **{k: float(lal_params[k]) for k in LAL_ARGS},
            waveform_approximant=self.approximant,
            reference_frequency=self.reference_frequency,
            minimum_frequency=self.domain.f_min,
            maximum_frequency=self.domain.f_max,
            catch_waveform_errors=False,
        )

    def _lal_reason(self, lal_params: dict[str, float]) -> str:
        """Re-run a refused call with LAL's stdio redirected, to capture its error messages.

        Redirection costs ~20x the waveform itself (temporary files per call), so it is
        switched on only to explain a failure.
        """
        import lal

        buf = io.StringIO()
        previous = lal.swig_redirect_standard_output_error(True)
        try:
            with contextlib.redirect_stderr(buf):
                self._call_lal(lal_params)
        except Exception:  # noqa: BLE001 - we only want the message
            pass
        finally:
            lal.swig_redirect_standard_output_error(previous)
        return " | ".join(line for line in buf.getvalue().splitlines() if line.strip())

    def polarizations(self, lal_params: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """One waveform from LAL parameters; raises :class:`WaveformFailure` with LAL's reason."""
        k0, k1 = self.domain.index_range
        try:
            pol = self._call_lal(lal_params)
        except Exception as exc:  # LAL raises RuntimeError/ValueError with a generic text
            detail = self._lal_reason(lal_params)
            raise WaveformFailure(f"{type(exc).__name__}: {exc}" + (f" [LAL: {detail}]" if detail else "")) from None
        if pol is None:
            raise WaveformFailure("LAL returned no waveform")
        hp, hc = pol["plus"][k0:k1], pol["cross"][k0:k1]
        if not (np.all(np.isfinite(hp)) and np.all(np.isfinite(hc))):
            raise WaveformFailure("non-finite values in the waveform")
        if not (np.any(hp != 0) or np.any(hc != 0)):
            raise WaveformFailure("waveform is identically zero in the band")
        return hp, hc


def build_waveform_generator(config: dict) -> WaveformGenerator:
    w = config["waveform"]
    return WaveformGenerator(
        domain=build_domain(config),
        approximant=w["approximant"],
        reference_frequency=float(w["reference_frequency"]),
        reference_distance=float(w["reference_distance"]),
    )


def generate_from_prior(
    generator: WaveformGenerator,
    priors,
    keys: list[str],
    n: int,
    rng: np.random.Generator,
    max_failures: int,
    progress: bool = False,
    source: str | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[dict]]:
    """Draw ``n`` parameter sets of ``keys`` and generate their polarizations.

    A draw that LAL refuses (or that comes back non-finite) is logged with its
    parameters and LAL's reason and replaced by the next draw of ``rng``, so the
    result is deterministic. Nothing is dropped silently: failures are returned.

    Parameters
    ----------
    generator : WaveformGenerator
    priors : bilby.core.prior.PriorDict
    keys : list of str
        Parameters to draw (the intrinsic ones).
    n : int
        Number of waveforms.
    rng : numpy.random.Generator
    max_failures : int
        Refused draws tolerated (from ``waveform.max_failure_fraction``, see :func:`max_failures`).
    progress : bool
        Show a progress bar.
    source : str, optional
        The prior file, named in the error message.

    Returns
    -------
    params : dict of (n,) arrays
    h_plus, h_cross : (n, n_bins) complex128 arrays
    failures : list of dict(index, reason, parameters)

    Raises
    ------
    WaveformError
        When more than ``max_failures`` draws fail.
    """
    from tqdm import tqdm

    fixed = fixed_parameters(priors)
    nb = len(generator.domain)
    hp = np.empty((n, nb), complex)
    hc = np.empty((n, nb), complex)
    params = draw(priors, keys, n, rng)
    failures: list[dict] = []
    todo = np.arange(n)
    bar = tqdm(total=n, disable=not progress, desc="waveforms", mininterval=2)
    while len(todo):
        full = {**{k: np.full(len(todo), v) for k, v in fixed.items()}, **{k: params[k][todo] for k in keys}}
        lal_params = generator.to_lal(full)
        failed = []
        for j, i in enumerate(todo):
            try:
                hp[i], hc[i] = generator.polarizations({k: lal_params[k][j] for k in LAL_ARGS})
                bar.update()
            except WaveformFailure as exc:
                record = {"index": int(i), "reason": str(exc), "parameters": {k: float(params[k][i]) for k in keys}}
                logger.warning("waveform %d refused, redrawing: %s; parameters %s", i, exc, record["parameters"])
                failures.append(record)
                failed.append(i)
        if len(failures) > max_failures:
            bar.close()
            first = failures[0]
            prior = f" ('{source}')" if source else ""
            raise WaveformError(
                f"{len(failures)} of {n + len(failures)} waveform draws failed ({generator.approximant} from "
                f"{generator.domain.f_min:g} Hz), more than the {max_failures} allowed by waveform.max_failure_fraction. "
                f"First failure: {first['reason']} at {first['parameters']}. Narrow the prior{prior} to where "
                f"{generator.approximant} is valid, or raise waveform.max_failure_fraction."
            )
        todo = np.asarray(failed, dtype=int)
        if len(todo):
            redraw = draw(priors, keys, len(todo), rng)
            for k in keys:
                params[k][todo] = redraw[k]
    bar.close()
    return params, hp, hc, failures


def longest_inspiral(priors, f_min: float) -> tuple[float, float, float] | None:
    """Longest time [s] from ``f_min`` to merger of the binaries a prior allows.

    The chirp time (TaylorF2, non-spinning, :func:`lalsimulation.SimInspiralTaylorF2ReducedSpinChirpTime`,
    as bilby's ``calculate_time_to_merger`` without its safety factor) grows as the masses shrink,
    and every mass parameterisation bilby converts (chirp mass, total mass, component masses,
    mass ratio, symmetric mass ratio) is monotonic in the component masses, so the longest signal
    lies at a corner of the box spanned by the two mass parameters' ranges. Constraint priors are
    ignored (the bound is conservative).

    Parameters
    ----------
    priors : bilby.core.prior.PriorDict
    f_min : float
        Starting frequency [Hz].

    Returns
    -------
    (seconds, mass_1, mass_2) or None
        The longest chirp time [s] and the component masses [Msun] of that corner; None when the
        prior's masses cannot be converted (then nothing is checked).
    """
    import itertools

    import lal
    import lalsimulation
    from bilby.gw.conversion import convert_to_lal_binary_black_hole_parameters


    ranges = {}
    for key in MASS_PARAMETERS:
        p = priors.get(key)
        if p is None or _is_constraint(p):
            continue
        if _is_fixed(p):
            ranges[key] = [float(p if isinstance(p, (int, float)) else p.peak)]
        else:
            ranges[key] = [float(p.minimum), float(p.maximum)]
    if len(ranges) != 2:
        return None
    keys = list(ranges)
    corners = np.array(list(itertools.product(*ranges.values())), dtype=float)
    try:
        conv, _ = convert_to_lal_binary_black_hole_parameters({k: corners[:, i] for i, k in enumerate(keys)})
        m1 = np.broadcast_to(np.asarray(conv["mass_1"], float), (len(corners),))
        m2 = np.broadcast_to(np.asarray(conv["mass_2"], float), (len(corners),))
    except Exception:  # noqa: BLE001 - an unusual parameterisation: no check rather than a wrong one
        return None
    best = None
    for a, b in zip(m1, m2):
        if not (np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0):
            continue
        t = lalsimulation.SimInspiralTaylorF2ReducedSpinChirpTime(float(f_min), a * lal.MSUN_SI, b * lal.MSUN_SI, 0.0, -1)
        t = max(float(t), 0.0)  # negative: f_min is beyond the binary's ISCO and the PN series fails; no inspiral in band
        if best is None or t > best[0]:
            best = (float(t), float(max(a, b)), float(min(a, b)))
    return best


def max_failures(fraction: float, n: int) -> int:
    """Number of refused draws tolerated for ``n`` waveforms."""
    return int(math.floor(fraction * n))


def check_signal_duration(settings: dict, priors) -> None:
    """Refuse a segment too short for the longest signal of the prior.

    The prior's ``geocent_time`` range (relative to the trigger) must lie inside the segment, and the part
    of the segment before the trigger, ``domain.duration - domain.post_trigger_duration``, must hold the
    longest inspiral from ``domain.f_min`` that the prior's mass ranges allow (TaylorF2 chirp time, see
    :func:`longest_inspiral`) ending at the earliest merger, after the window's roll-off
    (``domain.roll_off``); otherwise frequency-domain waveforms wrap around the segment, or the window
    tapers signals in real data.

    Parameters
    ----------
    settings : dict
        Config with a ``domain`` section and ``priors`` (the prior file's path, for messages).
    priors : bilby.core.prior.PriorDict
        The loaded prior.

    Raises
    ------
    PriorError
        When geocent_time's range leaves the segment (naming the range, the segment and the fix).
    ConfigError
        When the segment is too short: naming the durations, the binary and the settings to change.
    """
    dom = settings["domain"]
    f_min = float(dom["f_min"])
    post = float(dom["post_trigger_duration"])
    before = float(dom["duration"]) - post
    t_lo, t_hi = geocent_time_range(priors)
    source = f"'{settings.get('priors')}'"
    if t_hi >= post or t_lo <= -before:
        gps = " (it looks like an absolute GPS time)" if max(abs(t_lo), abs(t_hi)) > 1e8 else ""
        raise PriorError(
            f"the prior {source} puts geocent_time in [{t_lo:g}, {t_hi:g}] s{gps}, but geocent_time is relative to "
            f"trigger_time and the analysed segment spans [-{before:g}, {post:g}] s around it (domain.duration = "
            f"{dom['duration']} s, domain.post_trigger_duration = {post:g} s): mergers would lie outside the data. "
            f"Give geocent_time a range inside the segment, e.g. Uniform(minimum=-0.1, maximum=0.1), or move the "
            "segment (trigger_time, domain.post_trigger_duration)."
        )
    found = longest_inspiral(priors, f_min)
    if found is None:
        return
    seconds, m1, m2 = found
    earliest = max(0.0, -t_lo)  # the earliest merger, before the trigger, needs this much more inspiral before it
    roll_off = float(dom.get("roll_off") or 0.0)  # and the window must not taper the signal (see gw.domain)
    needed = seconds + earliest + roll_off
    if needed > before:
        duration = needed + post
        raise ConfigError(
            f"domain.duration - domain.post_trigger_duration = {dom['duration']} - {post:g} "
            f"= {before:g} s before the trigger is shorter than the longest signal of the prior "
            f"{source}: from domain.f_min = {f_min:g} Hz a binary of {m1:.3g} + {m2:.3g} Msun "
            f"lasts {seconds:.3g} s, the earliest merger is {earliest:g} s before the trigger, and the window's "
            f"roll-off (domain.roll_off) takes {roll_off:g} s. Its waveform would be tapered or wrap around the segment. Raise domain.duration to at least {duration:.3g} s (e.g. "
            f"{2 ** math.ceil(math.log2(duration)):g} s), raise domain.f_min, or raise the prior's lower mass bound."
        )
