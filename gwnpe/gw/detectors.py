"""Batched projection of gravitational-wave polarizations onto a detector network, in torch.

During training the extrinsic parameters (sky position, polarization angle, arrival
time) are drawn per batch and the frequency-domain polarizations are projected onto
every interferometer on the training device. :class:`DetectorNetwork` does this with
batched tensor code (no Python loop over the batch) and reproduces, to double
precision, what bilby's :class:`bilby.gw.detector.Interferometer` computes one sample at
a time:

* :meth:`DetectorNetwork.antenna_patterns` -- ``Interferometer.antenna_response``
  (plus and cross modes);
* :meth:`DetectorNetwork.time_delays` -- ``Interferometer.time_delay_from_geocenter``;
* :meth:`DetectorNetwork.project` -- ``Interferometer.get_detector_response`` (without
  the frequency mask and calibration), with the time origin documented there.

The detector geometry (detector tensor and vertex position) is read from bilby's
interferometer definitions, and the Greenwich mean sidereal time at the reference time
from LAL; no geometry is hard-coded here.
"""

from __future__ import annotations

import logging
import math
import os
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

#: Sidereal rotation rate of the Earth [rad/s of UT] in the IAU 1982 GMST model that
#: ``XLALGreenwichMeanSiderealTime`` (and bilby's copy of it) evaluates:
#: GMST [s] = 24110.54841 + 8640184.812866 T + 0.093104 T^2 - 6.2e-6 T^3 + UT1 seconds of the
#: day, with T in Julian centuries of 36525 * 86400 s. Its time derivative at T = 0,
#: (1 + 8640184.812866 / 3155760000) sidereal seconds per second, converted to radians.
OMEGA_EARTH_SIDEREAL = (1.0 + 8640184.812866 / 3155760000.0) * math.pi / 43200.0

#: Speed of light in vacuum [m/s] (exact SI value, as used by bilby and LAL).
SPEED_OF_LIGHT = 299792458.0


def sidereal_offset(reference_time: float, event_time: float) -> float:
    """Right-ascension rotation [rad, in [0, 2 pi)] that carries a sky position at ``reference_time``
    to the one with the same detector responses at ``event_time``: ``GMST(event) - GMST(reference)``.

    Antenna patterns and arrival-time delays depend on the sky position only through the hour angle
    ``ra - GMST(t)`` and on ``dec`` (LAL's ``ComputeDetAMResponse`` and ``TimeDelayFromEarthCenter``,
    which bilby calls), so a source at ``ra`` seen at ``reference_time + dt`` and one at
    ``ra + sidereal_offset`` seen at ``event_time + dt`` give identical strain in every detector.
    """
    import lal

    off = math.fmod(lal.GreenwichMeanSiderealTime(float(event_time)) - lal.GreenwichMeanSiderealTime(float(reference_time)),
                    2.0 * math.pi)
    return off + 2.0 * math.pi if off < 0 else off


def _bilby_detector_directory() -> str:
    import bilby.gw.detector

    return os.path.join(os.path.dirname(bilby.gw.detector.__file__), "detectors")


@lru_cache(maxsize=1)
def known_interferometers() -> tuple[str, ...]:
    """Names of the single interferometers that bilby defines.

    The components of multi-interferometer detectors (e.g. ``ET1``, ``ET2``, ``ET3`` of
    the triangular Einstein Telescope ``ET``) are listed by their own names.

    Returns
    -------
    tuple of str
        Sorted interferometer names accepted by :class:`DetectorNetwork`.
    """
    import bilby

    names = []
    for fname in sorted(os.listdir(_bilby_detector_directory())):
        if not fname.endswith(".interferometer"):
            continue
        det = bilby.gw.detector.get_empty_interferometer(fname[: -len(".interferometer")])
        if isinstance(det, bilby.gw.detector.Interferometer):
            names.append(det.name)
        else:  # a network (triangular detector): expose its components
            names.extend(ifo.name for ifo in det)
    return tuple(sorted(set(names)))


def _load_interferometer(name: str):
    """bilby's :class:`Interferometer` named ``name`` (also a component such as ``ET2``)."""
    import bilby

    if not isinstance(name, str):
        raise TypeError(f"interferometer names must be strings, got {name!r}")
    if os.path.exists(os.path.join(_bilby_detector_directory(), f"{name}.interferometer")):
        det = bilby.gw.detector.get_empty_interferometer(name)
        if isinstance(det, bilby.gw.detector.Interferometer):
            return det
        members = ", ".join(ifo.name for ifo in det)
        raise ValueError(
            f"'{name}' is a multi-interferometer detector; list its interferometers instead ({members})."
        )
    # components of multi-interferometer detectors (e.g. ET1 of the triangular ET)
    for fname in sorted(os.listdir(_bilby_detector_directory())):
        if not fname.endswith(".interferometer"):
            continue
        det = bilby.gw.detector.get_empty_interferometer(fname[: -len(".interferometer")])
        if not isinstance(det, bilby.gw.detector.Interferometer):
            for ifo in det:
                if ifo.name == name:
                    return ifo
    raise ValueError(
        f"Unknown interferometer '{name}'. Known interferometers (from bilby): "
        f"{', '.join(known_interferometers())}."
    )


class DetectorNetwork(torch.nn.Module):
    """Geometry of a list of interferometers as buffers (moves with ``.to(device)``).

    Parameters
    ----------
    detectors : list of str
        Interferometer names known to bilby (e.g. ``["H1", "L1", "V1"]``); see
        :func:`known_interferometers`. The output axis ``n_detectors`` follows this order.
    reference_time : float
        GPS time [s] relative to which all times ``dt`` are given (typically the
        trigger time of the analysis).
    dtype : torch.dtype, optional
        Real floating dtype of the buffers (``torch.float64`` or ``torch.float32``).
        All computations run in the buffers' dtype; ``.to(torch.float32)`` converts them.

    Attributes
    ----------
    detectors : tuple of str
        Interferometer names, in output order.
    reference_time : float
        GPS reference time [s].
    detector_tensors : Tensor, shape (n_detectors, 3, 3)
        Buffer: bilby's ``Interferometer.detector_tensor`` (dimensionless, Earth-fixed
        Cartesian frame).
    vertices : Tensor, shape (n_detectors, 3)
        Buffer: bilby's ``Interferometer.vertex`` [m], Earth-fixed Cartesian frame.
    gmst_reference : Tensor, shape ()
        Buffer: Greenwich mean sidereal time at ``reference_time`` [rad], reduced to
        [0, 2 pi), from ``lal.GreenwichMeanSiderealTime``.

    Notes
    -----
    **Sidereal time.** For a geocentre time ``t = reference_time + dt`` the sidereal
    time is evaluated as ``gmst_reference + OMEGA_EARTH_SIDEREAL * dt``. LAL (and bilby,
    which copies LAL's algorithm) evaluates the IAU 1982 polynomial
    ``GMST(T) = 24110.54841 + 8640184.812866 T + 0.093104 T^2 - 6.2e-6 T^3`` [s] plus the
    UT seconds of the day. The neglected curvature changes the rate by
    ``2 * 0.093104 T / 3155760000`` relative, i.e. below 1e-15 rad/s for dates within
    a century of J2000, so the linearisation error is below 1e-15 rad for
    ``|dt| < 1 s`` -- far below the ~1e-11 rad double-precision rounding of the
    sidereal time itself. Two features of LAL's *implementation* are not reproduced,
    and bound the agreement with ``lal.GreenwichMeanSiderealTime(reference_time + dt)``:

    * LAL forms the Julian day of the integer GPS second in double precision
      (resolution ~4.7e-10 day = 4e-5 s), so its GMST carries a saw-tooth rounding
      error of up to ~1.5e-9 rad that changes only at integer GPS seconds. Within the
      integer GPS second containing ``reference_time`` the model agrees with LAL to
      ~1e-11 rad; across second boundaries the difference is LAL's rounding jump
      (< ~3e-9 rad, i.e. < 3e-9 in the antenna patterns and < 1e-10 s in the time
      delays), while the increments ``gmst(t) - gmst(reference_time)`` agree with an
      exact (rational-arithmetic) evaluation of LAL's formula to < 1e-12 rad.
    * LAL maps GPS to UTC (taken as UT1) with leap seconds; if a leap second falls
      between ``reference_time`` and ``reference_time + dt`` LAL's GMST jumps by
      ~7.3e-5 rad and the smooth model does not (a warning is logged when one lies
      within 1 s of ``reference_time``).

    The buffers are not persistent (not part of ``state_dict``): they are rebuilt from
    bilby/LAL from ``detectors`` and ``reference_time``.
    """

    def __init__(self, detectors: list[str], reference_time: float, dtype: torch.dtype = torch.float64):
        super().__init__()
        import lal

        if isinstance(detectors, str):
            raise TypeError(f"detectors must be a list of interferometer names, not the string {detectors!r}")
        detectors = tuple(detectors)
        if not detectors:
            raise ValueError("DetectorNetwork needs at least one interferometer.")
        dupes = sorted({n for n in detectors if detectors.count(n) > 1})
        if dupes:
            raise ValueError(f"Interferometers listed more than once: {', '.join(dupes)}.")
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a real floating torch dtype, got {dtype!r}")

        loaded = [_load_interferometer(name) for name in detectors]
        tensors = np.stack([np.asarray(ifo.detector_tensor, dtype=np.float64) for ifo in loaded])
        vertices = np.stack([np.asarray(ifo.vertex, dtype=np.float64) for ifo in loaded])

        self.detectors = detectors
        self.reference_time = float(reference_time)
        gmst = math.fmod(lal.GreenwichMeanSiderealTime(self.reference_time), 2.0 * math.pi)
        if gmst < 0:
            gmst += 2.0 * math.pi

        sec = math.floor(self.reference_time)
        if lal.GPSLeapSeconds(sec - 1) != lal.GPSLeapSeconds(sec + 2):
            logger.warning(
                "A leap second lies within 1 s of reference_time %.3f: LAL's sidereal time jumps by "
                "7.3e-5 rad there and the linear model of DetectorNetwork does not.",
                self.reference_time,
            )

        self.register_buffer("detector_tensors", torch.tensor(tensors, dtype=dtype), persistent=False)
        self.register_buffer("vertices", torch.tensor(vertices, dtype=dtype), persistent=False)
        self.register_buffer("gmst_reference", torch.tensor(gmst, dtype=dtype), persistent=False)
        logger.debug(
            "DetectorNetwork(%s) at GPS %.6f: GMST %.12f rad", ",".join(detectors), self.reference_time, gmst
        )

    def extra_repr(self) -> str:
        return f"detectors={list(self.detectors)}, reference_time={self.reference_time!r}, dtype={self.dtype}"

    @property
    def n_detectors(self) -> int:
        """Number of interferometers."""
        return len(self.detectors)

    @property
    def dtype(self) -> torch.dtype:
        """Real dtype of the buffers, in which everything is computed."""
        return self.vertices.dtype

    @property
    def device(self) -> torch.device:
        """Device of the buffers."""
        return self.vertices.device

    # ------------------------------------------------------------------ helpers
    def _real(self, x) -> Tensor:
        return torch.as_tensor(x, dtype=self.dtype, device=self.device)

    def _batch(self, **arrays) -> list[Tensor]:
        """Convert to the module's dtype/device and broadcast to one common shape (batch,)."""
        tensors = [self._real(v) for v in arrays.values()]
        try:
            tensors = list(torch.broadcast_tensors(*tensors))
        except RuntimeError as err:
            shapes = ", ".join(f"{k}{tuple(t.shape)}" for k, t in zip(arrays, tensors))
            raise ValueError(f"extrinsic parameters do not broadcast to one batch shape: {shapes}") from err
        if tensors[0].ndim != 1:
            shapes = ", ".join(f"{k}{tuple(t.shape)}" for k, t in zip(arrays, tensors))
            raise ValueError(f"extrinsic parameters must be 1-d tensors of shape (batch,), got {shapes}")
        return tensors

    def _earth_angles(self, ra: Tensor, dec: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        """Longitude of the source relative to Greenwich, phi = ra - GMST [rad], and theta = pi/2 - dec."""
        gmst = self.gmst_reference + OMEGA_EARTH_SIDEREAL * dt
        return ra - gmst, math.pi / 2 - dec

    # ------------------------------------------------------------------ physics
    def antenna_patterns(self, ra, dec, psi, dt) -> tuple[Tensor, Tensor]:
        """Antenna patterns F+ and Fx of every interferometer.

        Same math as bilby's ``Interferometer.antenna_response(ra, dec, time, psi, mode)``
        for ``mode`` ``"plus"`` / ``"cross"`` and ``time = reference_time + dt``:
        ``F_A = D_ij e^A_ij`` with the polarization tensors ``e+ = m m - n n`` and
        ``ex = m n + n m`` of the wave-frame vectors ``m, n`` (LAL / Nishizawa et al. 2009
        conventions, psi counter-clockwise about the direction of propagation).

        Parameters
        ----------
        ra, dec : Tensor, shape (batch,)
            Right ascension and declination of the source [rad].
        psi : Tensor, shape (batch,)
            Polarization angle [rad].
        dt : Tensor, shape (batch,)
            Geocentre time minus ``reference_time`` [s]; sets the sidereal time.

        Returns
        -------
        F_plus, F_cross : Tensor, shape (batch, n_detectors)
            Dimensionless antenna patterns, in the module's dtype and device.
        """
        ra, dec, psi, dt = self._batch(ra=ra, dec=dec, psi=psi, dt=dt)
        phi, theta = self._earth_angles(ra, dec, dt)
        cphi, sphi = torch.cos(phi), torch.sin(phi)
        cth, sth = torch.cos(theta), torch.sin(theta)
        cpsi, spsi = torch.cos(psi), torch.sin(psi)
        m = torch.stack(
            (-cth * cphi * spsi + sphi * cpsi, -cth * sphi * spsi - cphi * cpsi, sth * spsi), dim=-1
        )
        n = torch.stack(
            (-cth * cphi * cpsi - sphi * spsi, -cth * sphi * cpsi + cphi * spsi, sth * cpsi), dim=-1
        )
        D = self.detector_tensors
        dmm = torch.einsum("bi,kij,bj->bk", m, D, m)
        dnn = torch.einsum("bi,kij,bj->bk", n, D, n)
        dmn = torch.einsum("bi,kij,bj->bk", m, D, n)
        dnm = torch.einsum("bi,kij,bj->bk", n, D, m)
        return dmm - dnn, dmn + dnm

    def time_delays(self, ra, dec, dt) -> Tensor:
        """Arrival time at each interferometer minus arrival time at the geocentre.

        As bilby's ``Interferometer.time_delay_from_geocenter(ra, dec, reference_time + dt)``:
        ``-(omega . vertex) / c`` with ``omega`` the unit vector towards the source in the
        Earth-fixed frame.

        Parameters
        ----------
        ra, dec : Tensor, shape (batch,)
            Right ascension and declination of the source [rad].
        dt : Tensor, shape (batch,)
            Geocentre time minus ``reference_time`` [s]; sets the sidereal time.

        Returns
        -------
        Tensor, shape (batch, n_detectors)
            Time delays [s], in the module's dtype and device.
        """
        ra, dec, dt = self._batch(ra=ra, dec=dec, dt=dt)
        phi, theta = self._earth_angles(ra, dec, dt)
        sth = torch.sin(theta)
        omega = torch.stack((sth * torch.cos(phi), sth * torch.sin(phi), torch.cos(theta)), dim=-1)
        return -torch.einsum("bi,ki->bk", omega, self.vertices) / SPEED_OF_LIGHT

    def time_shift_phasor(self, frequencies, ra, dec, dt) -> Tensor:
        """``exp(-2 pi i f (dt + tau))`` (batch, n_detectors, n_bins) on a uniform grid, cheaply.

        Same factor as in :meth:`project` (time origin ``reference_time``), computed from two
        small tables: with ``f_k = f_0 + (m a + b) df`` the phasor is
        ``E0 * A[a] * B[b]``, where ``E0``, ``A`` (n_bins/m entries) and ``B`` (m entries)
        are evaluated in float64 cycles reduced modulo one and only then cast to the
        working dtype, so the result is accurate to the working precision (one complex
        product per bin instead of a cosine and a sine).
        """
        ra, dec, dt = self._batch(ra=ra, dec=dec, dt=dt)
        frequencies = torch.as_tensor(frequencies, device=self.device, dtype=torch.float64)
        n = frequencies.shape[0]
        df = frequencies[1] - frequencies[0] if n > 1 else torch.zeros((), dtype=torch.float64, device=self.device)
        if n > 2 and not torch.allclose(torch.diff(frequencies), df, rtol=0, atol=1e-9 * float(abs(df))):
            raise ValueError("time_shift_phasor needs a uniform frequency grid")
        pdtype = self.dtype if self.device.type == "mps" else torch.float64
        shift = dt.to(pdtype)[:, None] + self.time_delays(ra, dec, dt).to(pdtype)  # (batch, n_detectors) [s]
        m = max(1, int(math.ceil(math.sqrt(n))))
        na = -(-n // m)

        def phasor(cycles):
            cycles = cycles - torch.round(cycles)
            angle = (-2.0 * math.pi * cycles).to(self.dtype)
            return torch.polar(torch.ones_like(angle), angle)

        idx_b = torch.arange(m, device=self.device, dtype=pdtype)
        idx_a = torch.arange(na, device=self.device, dtype=pdtype) * m
        e0 = phasor(frequencies[0].to(pdtype) * shift)  # (batch, n_detectors)
        step = df.to(pdtype) * shift
        tab_a = phasor(step[..., None] * idx_a)  # (batch, n_detectors, na)
        tab_b = phasor(step[..., None] * idx_b)  # (batch, n_detectors, m)
        out = (e0[..., None] * tab_a)[..., :, None] * tab_b[..., None, :]
        return out.reshape(*shift.shape, na * m)[..., :n]

    def project(self, h_plus, h_cross, frequencies, ra, dec, psi, dt, geocent_shift=None) -> Tensor:
        """Frequency-domain strain in every interferometer.

        ``response[b, k, j] = (F+[b, k] h+[b, j] + Fx[b, k] hx[b, j])
        * exp(-2 pi i f_j (dt[b] + geocent_shift[b] + tau[b, k]))``
        with ``F+, Fx`` from :meth:`antenna_patterns` and ``tau`` from :meth:`time_delays`,
        both evaluated at geocentre time ``reference_time + dt`` (``geocent_shift`` enters
        the phase only).

        **Time origin.** The polarizations are taken with their own time origin at
        ``t = 0`` (for LAL / bilby frequency-domain waveforms, the coalescence at the
        geocentre). The returned phase refers to GPS ``reference_time - geocent_shift``
        (``reference_time`` when ``geocent_shift`` is None): the result is the Fourier
        transform ``int s_k(t) exp(-2 pi i f t) dt`` of the strain ``s_k`` in interferometer
        ``k`` with ``t`` measured in seconds since that GPS time, for a signal whose
        geocentre arrival time is GPS ``reference_time + dt``. Precisely, for
        ``geocent_shift = reference_time - start_time``, ``response[b, k]`` equals bilby's
        ``ifo_k.get_detector_response({"plus": h+[b], "cross": hx[b]}, {"ra": ra[b],
        "dec": dec[b], "psi": psi[b], "geocent_time": reference_time + dt[b]})`` for an
        interferometer with ``strain_data.start_time == start_time``, no calibration
        model and ``reference_time`` attribute None, on the bins of its frequency mask
        (bilby shifts by ``geocent_time - start_time + tau``). With ``geocent_shift=None``
        this is bilby with ``start_time == reference_time``; for another segment start
        multiply by the common factor ``exp(-2 pi i f (reference_time - start_time))``.

        Parameters
        ----------
        h_plus, h_cross : Tensor, complex, shape (batch, n_bins) or (1, n_bins)
            Frequency-domain polarizations [1/Hz]; converted to the complex dtype
            matching the module (complex128 for float64, complex64 for float32).
        frequencies : Tensor, shape (n_bins,)
            Frequencies of the bins [Hz].
        ra, dec, psi : Tensor, shape (batch,)
            Sky position and polarization angle [rad].
        dt : Tensor, shape (batch,)
            Geocentre arrival time minus ``reference_time`` [s].
        geocent_shift : float or Tensor of shape (batch,), optional
            Extra time shift [s] added to the geocentre arrival time in the phase only
            (antenna patterns and time delays stay at ``reference_time + dt``); moves the
            time origin of the output to GPS ``reference_time - geocent_shift``.

        Returns
        -------
        Tensor, complex, shape (batch, n_detectors, n_bins)
            Detector responses [1/Hz]. No frequency mask or calibration is applied.

        Notes
        -----
        The phase ``f (dt + geocent_shift + tau)`` reaches ~1e2 cycles, so it is
        accumulated in float64 and reduced modulo one cycle before the working dtype is
        used (float32 would otherwise lose ~4e-5 rad at 512 Hz); on devices without
        float64 (MPS) it is computed in the working dtype.
        """
        ra, dec, psi, dt = self._batch(ra=ra, dec=dec, psi=psi, dt=dt)
        batch = ra.shape[0]
        cdtype = torch.complex128 if self.dtype == torch.float64 else torch.complex64
        h_plus = torch.as_tensor(h_plus, device=self.device).to(cdtype)
        h_cross = torch.as_tensor(h_cross, device=self.device).to(cdtype)
        frequencies = self._real(frequencies)
        if frequencies.ndim != 1:
            raise ValueError(f"frequencies must have shape (n_bins,), got {tuple(frequencies.shape)}")
        n_bins = frequencies.shape[0]
        for name, h in (("h_plus", h_plus), ("h_cross", h_cross)):
            if h.ndim != 2 or h.shape[1] != n_bins or h.shape[0] not in (1, batch):
                raise ValueError(
                    f"{name} must have shape (batch, n_bins) = ({batch}, {n_bins}) or (1, {n_bins}), "
                    f"got {tuple(h.shape)}"
                )

        f_plus, f_cross = self.antenna_patterns(ra, dec, psi, dt)
        tau = self.time_delays(ra, dec, dt)

        phase_dtype = self.dtype if self.device.type == "mps" else torch.float64
        shift = dt.to(phase_dtype)[:, None] + tau.to(phase_dtype)  # (batch, n_detectors) [s]
        if geocent_shift is not None:
            gs = torch.as_tensor(geocent_shift, dtype=phase_dtype, device=self.device)
            if gs.ndim > 1 or (gs.ndim == 1 and gs.shape[0] not in (1, batch)):
                raise ValueError(f"geocent_shift must be a scalar or have shape ({batch},), got {tuple(gs.shape)}")
            shift = shift + gs.reshape(-1, 1)
        cycles = frequencies.to(phase_dtype) * shift[..., None]  # (batch, n_detectors, n_bins)
        cycles = cycles - torch.round(cycles)
        angle = (-2.0 * math.pi * cycles).to(self.dtype)
        phasor = torch.complex(torch.cos(angle), torch.sin(angle))

        strain = f_plus[..., None] * h_plus[:, None, :] + f_cross[..., None] * h_cross[:, None, :]
        return strain * phasor
