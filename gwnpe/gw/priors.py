"""bilby prior files: the single source of truth for every stage.

Conventions
-----------
* ``geocent_time`` is relative to the config's ``trigger_time`` [s] (as in DINGO);
  :func:`to_absolute_time` shifts it for bilby's samplers.
* ``luminosity_distance`` is in Mpc; masses are detector-frame, in solar masses.
* Parameters split into *intrinsic* ones (stored in the waveform bank and
  training set) and *extrinsic* ones (:data:`EXTRINSIC`), applied at training time.

Draws are made with :meth:`bilby.core.prior.Prior.rescale` from a numpy
``Generator``, so they depend only on the seed, not on bilby's global RNG.
"""

from __future__ import annotations

import ast
import difflib
import functools
import logging
import math
import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError, PriorError

logger = logging.getLogger(__name__)

#: Parameters applied by detector projection at training time.
EXTRINSIC = ("luminosity_distance", "ra", "dec", "psi", "geocent_time")
#: The parameters the detector arrival times depend on (GNPE's time proxies need them sampled).
ARRIVAL_TIME_PARAMETERS = ("geocent_time", "ra", "dec")

#: Mass parameterisations understood by bilby's conversion to LAL parameters (detector frame).
MASS_PARAMETERS = (
    "mass_1", "mass_2", "chirp_mass", "total_mass", "mass_ratio", "symmetric_mass_ratio",
)
#: Spin parameters understood by bilby's conversion.
SPIN_PARAMETERS = (
    "a_1", "a_2", "tilt_1", "tilt_2", "cos_tilt_1", "cos_tilt_2", "phi_12", "phi_jl",
    "chi_1", "chi_2", "chi_1_in_plane", "chi_2_in_plane",
)
#: Spin parameters that only precessing approximants accept when non-zero.
PRECESSING_SPIN_PARAMETERS = (
    "tilt_1", "tilt_2", "cos_tilt_1", "cos_tilt_2", "phi_12", "phi_jl",
    "chi_1_in_plane", "chi_2_in_plane",
)
ANGLE_PARAMETERS = ("theta_jn", "cos_theta_jn", "phase")
#: Every parameter the waveform model or the detector projection knows.
KNOWN_PARAMETERS = MASS_PARAMETERS + SPIN_PARAMETERS + ANGLE_PARAMETERS + EXTRINSIC
#: Parameters that must be defined (sampled or fixed) in every prior file.
REQUIRED = ("phase", "luminosity_distance", "ra", "dec", "psi", "geocent_time")

ALIGNED_SPIN_APPROXIMANTS = ("IMRPhenomD", "IMRPhenomXAS", "IMRPhenomXHM", "SEOBNRv4_ROM", "TaylorF2")


def _is_constraint(prior) -> bool:
    from bilby.core.prior import Constraint

    return isinstance(prior, Constraint)


def _is_fixed(prior) -> bool:
    from bilby.core.prior import DeltaFunction

    return isinstance(prior, (int, float)) or isinstance(prior, DeltaFunction)


# ----------------------------------------------------------------------------- reading prior files

#: Numerical constants a prior file may use (besides literal numbers).
CONSTANTS = {"pi": np.pi, "np.pi": np.pi, "numpy.pi": np.pi, "inf": np.inf, "np.inf": np.inf, "numpy.inf": np.inf,
             "e": np.e, "np.e": np.e, "numpy.e": np.e}
_ARITHMETIC = {"Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mult": lambda a, b: a * b,
               "Div": lambda a, b: a / b, "Pow": lambda a, b: a**b}
_FORMAT = ("Prior files are data, never code: each line is 'name = <bilby prior class>(keyword=value, ...)' with "
           "numbers, strings, True/False/None, np.pi and arithmetic on numbers as values (or nested prior classes), "
           "or 'name = <number>'; see config/priors/default.prior")


class _Refused(Exception):
    """A prior-file expression outside what :func:`parse_prior_text` evaluates."""


def prior_classes() -> dict[str, type]:
    """The prior classes a prior file may name: every :class:`bilby.core.prior.Prior` subclass exported by
    ``bilby.core.prior`` and ``bilby.gw.prior`` (joint priors excepted), by class name."""
    import bilby

    out = {}
    for module in (bilby.core.prior, bilby.gw.prior):
        for name in dir(module):
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, bilby.core.prior.Prior) and not issubclass(
                    obj, bilby.core.prior.JointPrior):
                out[name] = obj
    return out


def _dotted(node) -> str | None:
    """``a.b.c`` of a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _evaluate(node, classes: dict[str, type]):
    """Value of an allowed expression node: literals, constants, arithmetic on numbers, prior-class calls."""
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float, str))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand, classes)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _Refused("a sign applies to numbers only")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op).__name__ in _ARITHMETIC:
        a, b = _evaluate(node.left, classes), _evaluate(node.right, classes)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
            raise _Refused("arithmetic applies to numbers only")
        return _ARITHMETIC[type(node.op).__name__](a, b)
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [_evaluate(v, classes) for v in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    name = _dotted(node)
    if name is not None:
        if name in CONSTANTS:
            return CONSTANTS[name]
        raise _Refused(f"'{name}' is not a number, a string or a known constant ({', '.join(sorted(CONSTANTS))})")
    if isinstance(node, ast.Call):
        func = _dotted(node.func)
        cls_name = (func or "").rsplit(".", 1)[-1]
        module = func.rsplit(".", 1)[0] if func and "." in func else None
        if func is None or cls_name not in classes or (module is not None and not module.startswith("bilby.")):
            raise _Refused(f"'{func or ast.unparse(node.func)}' is not a bilby prior class (bilby.core.prior or bilby.gw.prior)")
        if any(k.arg is None for k in node.keywords):
            raise _Refused("'**' arguments are not allowed")
        args = [_evaluate(a, classes) for a in node.args]
        kwargs = {k.arg: _evaluate(k.value, classes) for k in node.keywords}
        return classes[cls_name](*args, **kwargs)
    raise _Refused(f"'{ast.unparse(node)}' is not a literal, a known constant or a bilby prior class")


def parse_prior_text(text: str, source: str = "<prior>") -> dict:
    """The entries of a bilby prior file, built without evaluating any code from it.

    Each line ``name = value`` (bilby's format; ``#`` comments and blank lines skipped) is parsed with
    :mod:`ast` and only literals, the constants of :data:`CONSTANTS`, arithmetic on numbers and calls
    of bilby prior classes (:func:`prior_classes`) with such arguments are evaluated; anything else
    (a function call, an import, an attribute of another module) is refused, naming the line.

    Returns
    -------
    dict
        name -> bilby Prior, or float for a fixed value (as bilby's ``PriorDict.from_file``).

    Raises
    ------
    PriorError
        Naming ``source``, the line and why it was refused.
    """
    import warnings

    classes = prior_classes()
    out = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        where = f"prior file '{source}', line {number} ('{line.strip()}')"
        if not sep or not key.isidentifier():
            raise PriorError(f"{where}: expected 'name = value'. {_FORMAT}.")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SyntaxWarning)  # LaTeX labels such as '$M_{\odot}$'
                tree = ast.parse(value, mode="eval")
        except SyntaxError as exc:
            raise PriorError(f"{where}: not a valid value ({exc.msg}). {_FORMAT}.") from None
        try:
            out[key] = _evaluate(tree.body, classes)
        except _Refused as exc:
            raise PriorError(f"{where} was refused: {exc}. {_FORMAT}.") from None
        except Exception as exc:  # a bilby prior class refused its arguments
            inverted = re.search(r"maximum (\S+) <= minimum (\S+) for \w+ prior on (\w+)", str(exc))
            if inverted:
                hi, lo, name = inverted.groups()
                raise PriorError(
                    f"prior on '{name}' in '{source}' (line {number}) has an empty or inverted range: minimum={lo} >= "
                    f"maximum={hi}. Make minimum < maximum, or fix '{name}' to a single value (e.g. '{name} = {lo}')."
                ) from None
            raise PriorError(f"{where}: bilby refused the arguments ({type(exc).__name__}: {exc}). Fix that line; "
                             f"{_FORMAT}.") from None
        if not isinstance(out[key], (int, float)) and type(out[key]).__name__ not in classes:
            raise PriorError(f"{where}: the value must be a number or a bilby prior. {_FORMAT}.")
        if isinstance(out[key], bool):
            raise PriorError(f"{where}: the value must be a number or a bilby prior, not {out[key]}. {_FORMAT}.")
    return out


def load_priors(path: str | Path, approximant: str | None = None, text: str | None = None):
    """Load and check a bilby prior file, safely (:func:`parse_prior_text`: nothing in it is executed).

    Parameters
    ----------
    path : str or Path
        bilby ``.prior`` file (with ``text``: only the name used in messages).
    approximant : str, optional
        When given, sampled precessing-spin parameters are refused for aligned-spin models.
    text : str, optional
        The prior file's content (e.g. stored in a model file); read from ``path`` when omitted.

    Returns
    -------
    bilby.gw.prior.BBHPriorDict

    Raises
    ------
    PriorError
        Missing/unreadable file, unknown parameter, empty or inverted range, missing
        required parameter, or a parameter the approximant cannot use.
    """
    import bilby

    path = Path(path)
    if text is None:
        if path.is_dir():
            raise PriorError(f"prior file '{path}' is a directory; set 'priors' in the config to a bilby prior file "
                             "(e.g. config/priors/default.prior).")
        if not path.is_file():
            raise PriorError(f"prior file '{path}' does not exist; set 'priors' in the config to a bilby prior file.")
        text = path.read_text()
    entries = parse_prior_text(text, str(path))
    try:
        priors = bilby.gw.prior.BBHPriorDict(dictionary=entries)
    except Exception as exc:  # noqa: BLE001 - bilby raises many types
        raise PriorError(f"prior file '{path}' could not be turned into a bilby prior ({type(exc).__name__}: {exc}). "
                         f"{_FORMAT}.") from exc

    unknown = [k for k, p in priors.items() if not _is_constraint(p) and k not in KNOWN_PARAMETERS]
    if unknown:
        hints = []
        for k in unknown:
            guess = difflib.get_close_matches(k, KNOWN_PARAMETERS, n=1)
            hints.append(f"'{k}' (did you mean '{guess[0]}'?)" if guess else f"'{k}'")
        raise PriorError(
            f"prior file '{path}' defines {', '.join(hints)}, which neither the waveform model nor "
            "the detector projection knows. Remove or rename it (or make it a bilby Constraint); "
            f"known parameters: {', '.join(KNOWN_PARAMETERS)}."
        )
    missing = [k for k in REQUIRED if k not in priors and not (k == "theta_jn" and "cos_theta_jn" in priors)]
    if "theta_jn" not in priors and "cos_theta_jn" not in priors:
        missing.append("theta_jn")
    if missing:
        raise PriorError(
            f"prior file '{path}' does not define {', '.join(missing)}; give each a prior or a fixed value."
        )
    masses = [k for k in MASS_PARAMETERS if k in priors and not _is_constraint(priors[k])]
    if len(masses) != 2:
        raise PriorError(
            f"prior file '{path}' must define exactly two mass parameters (e.g. chirp_mass and "
            f"mass_ratio), found {masses or 'none'}. Keep two and turn the others into "
            "bilby.core.prior.Constraint priors."
        )
    for key, prior in priors.items():
        if _is_fixed(prior) or _is_constraint(prior):
            continue
        lo, hi = getattr(prior, "minimum", None), getattr(prior, "maximum", None)
        if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
            raise PriorError(
                f"prior on '{key}' in '{path}' must have a finite range, got [{lo}, {hi}]: the network's "
                "parameter standardisation and the PP-test need bounded priors. Give it finite minimum "
                "and maximum."
            )
        if not lo < hi:
            raise PriorError(
                f"prior on '{key}' in '{path}' has an empty or inverted range: minimum={lo} >= maximum={hi}. "
                f"Make minimum < maximum, or fix '{key}' to a single value (e.g. '{key} = {lo}')."
            )
    if approximant in ALIGNED_SPIN_APPROXIMANTS:
        bad = [k for k in PRECESSING_SPIN_PARAMETERS if k in priors and not _is_fixed(priors[k])]
        if bad:
            raise PriorError(
                f"prior file '{path}' samples {', '.join(bad)}, but {approximant} is an aligned-spin "
                "approximant. Fix them, use chi_1/chi_2 (bilby AlignedSpin), or choose a precessing approximant."
            )
    _check_physical_ranges(priors, path)
    _check_constraints_satisfiable(priors, path)
    return priors


#: Physical (and bilby-conventional) range of each standard parameter; a prior must stay inside it.
PHYSICAL_RANGES = {
    "luminosity_distance": (0.0, np.inf, "a distance in Mpc is positive", False),
    "chirp_mass": (0.0, np.inf, "masses are positive", False),
    "total_mass": (0.0, np.inf, "masses are positive", False),
    "mass_1": (0.0, np.inf, "masses are positive", False),
    "mass_2": (0.0, np.inf, "masses are positive", False),
    "mass_ratio": (0.0, 1.0, "mass_ratio = m2 / m1 <= 1 (bilby's convention)", False),
    "symmetric_mass_ratio": (0.0, 0.25, "the symmetric mass ratio lies in (0, 1/4]", False),
    "a_1": (0.0, 1.0, "spin magnitudes lie in [0, 1]", True),
    "a_2": (0.0, 1.0, "spin magnitudes lie in [0, 1]", True),
    "chi_1": (-1.0, 1.0, "aligned spins lie in [-1, 1]", True),
    "chi_2": (-1.0, 1.0, "aligned spins lie in [-1, 1]", True),
    "tilt_1": (0.0, np.pi, "tilt angles lie in [0, pi]", True),
    "tilt_2": (0.0, np.pi, "tilt angles lie in [0, pi]", True),
    "cos_tilt_1": (-1.0, 1.0, "cosines lie in [-1, 1]", True),
    "cos_tilt_2": (-1.0, 1.0, "cosines lie in [-1, 1]", True),
    "theta_jn": (0.0, np.pi, "the inclination theta_jn lies in [0, pi]", True),
    "cos_theta_jn": (-1.0, 1.0, "cosines lie in [-1, 1]", True),
    "dec": (-np.pi / 2, np.pi / 2, "the declination lies in [-pi/2, pi/2]", True),
    "ra": (0.0, 2 * np.pi, "the right ascension lies in [0, 2 pi]", True),
    "phase": (0.0, 2 * np.pi, "the phase is 2 pi-periodic: one period, [0, 2 pi]", True),
    "phi_12": (0.0, 2 * np.pi, "azimuths are 2 pi-periodic: one period, [0, 2 pi]", True),
    "phi_jl": (0.0, 2 * np.pi, "azimuths are 2 pi-periodic: one period, [0, 2 pi]", True),
    "psi": (0.0, np.pi, "the polarisation angle is pi-periodic: one period, [0, pi] (bilby's convention)", True),
}


def _check_physical_ranges(priors, path) -> None:
    """Refuse priors (sampled ranges or fixed values) outside a parameter's physical range."""
    for key, (plo, phi, why, closed) in PHYSICAL_RANGES.items():
        if key not in priors or _is_constraint(priors[key]):
            continue
        p = priors[key]
        lo, hi = (float(p), float(p)) if isinstance(p, (int, float)) else (
            (float(p.peak), float(p.peak)) if _is_fixed(p) else (float(p.minimum), float(p.maximum)))
        tol = 1e-9 * max(1.0, abs(plo), abs(phi) if np.isfinite(phi) else 1.0)
        below = lo < plo - tol if closed else lo <= plo
        if below or hi > phi + tol:
            allowed = f"[{plo:.6g}, {phi:.6g}]" if closed else f"({plo:.6g}, {phi:.6g}]"
            given = f"the fixed value {lo:g}" if lo == hi else f"the range [{lo:g}, {hi:g}]"
            raise PriorError(
                f"prior on '{key}' in '{path}' has {given}, outside its physical range {allowed}: {why}. "
                f"Give '{key}' a prior inside that range."
            )


def first_outside_prior(priors, table: dict) -> tuple[int, str, float, tuple[float, float]] | None:
    """The first (row, parameter, value, (minimum, maximum)) of ``table`` outside its prior's range, or None."""
    for key, values in table.items():
        p = priors.get(key)
        if p is None or _is_constraint(p) or _is_fixed(p):
            continue
        bad = np.flatnonzero((np.asarray(values) < p.minimum) | (np.asarray(values) > p.maximum))
        if bad.size:
            return int(bad[0]), key, float(values[bad[0]]), (float(p.minimum), float(p.maximum))
    return None


def _constraint_ranges(priors) -> str:
    return ", ".join(f"{k} in [{p.minimum:g}, {p.maximum:g}]" for k, p in priors.items() if _is_constraint(p))


def _check_constraints_satisfiable(priors, path, n: int = 2000) -> None:
    """Refuse constraint priors that reject every one of ``n`` fixed-seed draws (an empty prior volume)."""
    if not any(_is_constraint(p) for p in priors.values()):
        return
    keys = [k for k in sampled_keys(priors) if k in MASS_PARAMETERS + SPIN_PARAMETERS]
    if not keys:
        return
    rng = np.random.default_rng(0)
    u = rng.random((len(keys), n))
    cand = {k: np.asarray(priors[k].rescale(u[i]), dtype=float) for i, k in enumerate(keys)}
    if not _constraints_ok(priors, cand, n).any():
        raise PriorError(
            f"prior file '{path}': its constraint priors ({_constraint_ranges(priors)}) reject all of {n} test "
            f"draws of {', '.join(keys)}, so the prior volume is empty. Widen the Constraint ranges or move the "
            "sampled mass/spin ranges so that they overlap."
        )


def _constraints_ok(priors, cand: dict[str, np.ndarray], m: int) -> np.ndarray:
    """Boolean (m,) mask of the draws ``cand`` (plus fixed values) that satisfy every Constraint prior.

    Evaluated here rather than with ``PriorDict.evaluate_constraints``, which fails to broadcast
    when bilby's conversion turns fixed parameters into scalars.
    """
    fixed = fixed_parameters(priors)
    full = {**{k: np.full(m, v) for k, v in fixed.items()}, **cand}
    converted = priors.conversion_function(dict(full))
    ok = np.ones(m, dtype=bool)
    for key, prior in priors.items():
        if _is_constraint(prior) and key in converted:
            ok &= np.broadcast_to(np.asarray(prior.prob(np.asarray(converted[key], float)) > 0), (m,))
    return ok


def uniform_over_the_sky_circle(priors) -> bool:
    """Whether right ascension is sampled from Uniform(0, 2 pi): the prior a rotation of the sky by a
    sidereal-time difference leaves unchanged (what lets one model serve any GPS time)."""
    ra = priors.get("ra")
    return (type(ra).__name__ == "Uniform" and math.isclose(ra.minimum, 0.0, abs_tol=1e-12)
            and math.isclose(ra.maximum, 2 * math.pi, rel_tol=1e-12))


def sampled_keys(priors) -> list[str]:
    """Parameters with a non-trivial prior, in file order."""
    return [k for k, p in priors.items() if not _is_fixed(p) and not _is_constraint(p)]


def fixed_parameters(priors) -> dict[str, float]:
    """Parameters fixed to a single value."""
    out = {}
    for k, p in priors.items():
        if isinstance(p, (int, float)):
            out[k] = float(p)
        elif _is_fixed(p):
            out[k] = float(p.peak)
    return out


def intrinsic_keys(priors) -> list[str]:
    """Sampled parameters that are stored in the bank and training set."""
    return [k for k in sampled_keys(priors) if k not in EXTRINSIC]


def draw(priors, keys: list[str], n: int, rng: np.random.Generator, max_rounds: int = 100) -> dict[str, np.ndarray]:
    """Draw ``n`` samples of ``keys`` (plus fixed values), honouring constraint priors.

    Samples come from inverse-CDF rescaling of ``rng`` uniforms, so they are a
    deterministic function of the generator state.
    """
    # Constraint priors in GW prior files bear on masses and spins; a draw of other (extrinsic)
    # parameters alone cannot violate them and lacks what bilby's conversion needs to evaluate them.
    constrained = any(_is_constraint(p) for p in priors.values()) and any(
        k in MASS_PARAMETERS + SPIN_PARAMETERS for k in keys
    )
    out = {k: np.empty(0) for k in keys}
    have = 0
    for _ in range(max_rounds):
        m = max(n - have, 1) if have else n
        u = rng.random((len(keys), m))
        cand = {k: np.asarray(priors[k].rescale(u[i]), dtype=float) for i, k in enumerate(keys)}
        ok = _constraints_ok(priors, cand, m) if constrained else np.ones(m, bool)
        for k in keys:
            out[k] = np.concatenate([out[k], cand[k][ok]])
        have = len(out[keys[0]]) if keys else n
        if have >= n:
            return {k: v[:n] for k, v in out.items()}
    raise PriorError(
        f"constraint priors ({_constraint_ranges(priors)}) rejected almost every draw ({have} of {n} accepted "
        f"after {max_rounds} rounds): the constrained prior volume is empty or tiny. Widen the Constraint "
        "ranges or move the sampled mass/spin ranges so that they overlap."
    )


def to_absolute_time(priors, trigger_time: float):
    """Return a copy of ``priors`` with ``geocent_time`` shifted to GPS [s] for bilby samplers."""
    import copy

    from bilby.core.prior import DeltaFunction, Uniform

    out = copy.deepcopy(priors)
    p = out["geocent_time"]
    if isinstance(p, (int, float)) or isinstance(p, DeltaFunction):
        out["geocent_time"] = DeltaFunction(trigger_time + (p if isinstance(p, (int, float)) else p.peak), name="geocent_time")
    elif isinstance(p, Uniform):
        out["geocent_time"] = Uniform(trigger_time + p.minimum, trigger_time + p.maximum, name="geocent_time", latex_label=p.latex_label, unit=p.unit)
    else:
        raise PriorError(f"geocent_time prior {p!r} cannot be shifted to absolute time; use Uniform or a fixed value.")
    return out


def geocent_time_range(priors) -> tuple[float, float]:
    """Smallest and largest geocent_time [s] (relative to the trigger) that the prior allows."""
    p = priors.get("geocent_time", 0.0)
    if isinstance(p, (int, float)):
        return float(p), float(p)
    return (float(getattr(p, "minimum", getattr(p, "peak", 0.0))), float(getattr(p, "maximum", getattr(p, "peak", 0.0))))


def geocent_time_bound(priors) -> float:
    """Largest |geocent_time| [s] (relative to the trigger) that the prior allows."""
    return max(abs(t) for t in geocent_time_range(priors))


def injected_parameters(priors, parameters: dict, trigger_time: float) -> dict:
    """Injected parameters with the prior's fixed ones added and ``geocent_time`` in GPS [s] (bilby's convention)."""
    full = {**fixed_parameters(priors), **parameters}
    full["geocent_time"] = full.get("geocent_time", 0.0) + trigger_time
    return full


def check_arrival_time_parameters(priors, source) -> None:
    """GNPE shifts each detector's strain by its arrival time: refuse a prior (file ``source``) that
    fixes or lacks a parameter the arrival times depend on (:data:`ARRIVAL_TIME_PARAMETERS`)."""
    missing = [k for k in ARRIVAL_TIME_PARAMETERS if k not in sampled_keys(priors)]
    if missing:
        raise ConfigError(
            f"model.gnpe.enabled: true needs {', '.join(ARRIVAL_TIME_PARAMETERS)} sampled in the prior file "
            f"'{source}', which fixes or lacks {', '.join(missing)}: give them a distribution there, or set "
            "model.gnpe.enabled: false.")


@functools.cache
def _truncated_class():
    """:class:`Truncated`, built on first use (bilby is imported lazily in this module)."""
    from bilby.core.prior import Prior

    class Truncated(Prior):
        """A one-dimensional prior restricted to ``[minimum, maximum]`` and renormalised there.

        Exact for any bilby prior with a ``cdf``: draws are the base prior's inverse CDF applied to
        uniforms mapped into ``[cdf(minimum), cdf(maximum)]``; the density is the base density divided
        by the mass kept. Used by per-event refinement (:mod:`gwnpe.inference.refinement`).
        """

        def __init__(self, base, minimum: float, maximum: float):
            lo, hi = float(getattr(base, "minimum", -np.inf)), float(getattr(base, "maximum", np.inf))
            minimum, maximum = max(float(minimum), lo), min(float(maximum), hi)
            if not minimum < maximum:
                raise PriorError(f"truncating the {base.name} prior to [{minimum:g}, {maximum:g}] keeps no prior mass.")
            super().__init__(name=base.name, latex_label=base.latex_label, unit=base.unit, minimum=minimum,
                             maximum=maximum, boundary=None)
            self.base = base
            self.cdf_minimum = float(base.cdf(minimum)) if minimum > lo else 0.0
            self.cdf_maximum = float(base.cdf(maximum)) if maximum < hi else 1.0
            self.mass = self.cdf_maximum - self.cdf_minimum
            if not self.mass > 0:
                raise PriorError(f"truncating the {base.name} prior to [{minimum:g}, {maximum:g}] keeps no prior mass.")

        def rescale(self, val):
            u = self.cdf_minimum + np.asarray(val, float) * self.mass
            return np.clip(self.base.rescale(u), self.minimum, self.maximum)

        def prob(self, val):
            val = np.asarray(val, float)
            return np.where(self.is_in_prior_range(val), self.base.prob(val) / self.mass, 0.0)

        def ln_prob(self, val):
            with np.errstate(divide="ignore"):
                return np.log(self.prob(val))

        def cdf(self, val):
            return np.clip((np.asarray(self.base.cdf(np.asarray(val, float)), float) - self.cdf_minimum) / self.mass, 0.0, 1.0)

    return Truncated


def truncate_priors(priors, bounds: dict[str, tuple[float, float]]):
    """A copy of ``priors`` with each parameter of ``bounds`` restricted to its ``(minimum, maximum)``
    (clipped to the prior's own range) and renormalised; the others are unchanged.

    Raises
    ------
    PriorError
        If a bound names a parameter that is not sampled, or keeps no prior mass.
    """
    import copy

    out = copy.deepcopy(priors)
    truncated = _truncated_class()
    sampled = sampled_keys(priors)
    for k, (lo, hi) in bounds.items():
        if k not in sampled:
            raise PriorError(f"cannot truncate '{k}': it is not a sampled parameter of the prior ({', '.join(sampled)}).")
        base = out[k].base if isinstance(out[k], truncated) else out[k]
        out[k] = truncated(base, lo, hi)
    return out


def prior_bounds(prior) -> tuple[float, float]:
    """(minimum, maximum) of a one-dimensional prior (infinite where it has none)."""
    return float(getattr(prior, "minimum", -np.inf)), float(getattr(prior, "maximum", np.inf))


def is_periodic(prior) -> bool:
    """Whether the prior's boundary is periodic (phase, ra, psi in the repo's prior files)."""
    return getattr(prior, "boundary", None) == "periodic"
