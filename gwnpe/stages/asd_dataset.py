"""The asd_dataset stage: many Welch ASDs per detector, the noise a noise-conditioned network is trained
over (as DINGO's ASD datasets of an observing run).

``asd_dataset.source: simulated``: per ASD, the detector's noise curve varied as noise varies across a
run (:func:`gwnpe.gw.noise.varied_psd`: overall scale, tilt, spectral lines), Gaussian noise of
``segments x domain.duration`` s simulated from it and its Welch estimate taken (segments of
``domain.duration``, 50% overlap, Hann, median), so every ASD carries the estimation noise of real ones.
``files``: Welch ASDs of consecutive, non-overlapping windows of ``segments x domain.duration`` s of
``asd_dataset.strain_files`` between ``gps_start`` and ``gps_end``; windows with gaps or NaNs are
skipped and counted. Each ASD is seeded on its own (detector, index), so the result is the same
serially or on any number of dask workers and chunk sizes.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import GwnpeError, StrainError
from ..gw.domain import build_domain
from ..gw.noise import event_welch_psd, load_noise_curve, simulate_noise, varied_psd
from ..gw.strain_io import read_strain
from ..products.asd_dataset import ASDDataset, write_asd_dataset
from ..products.common import make_provenance, save_figure
from ..seeding import stage_rng
from .cluster import optional_client
from .settings import stage_settings

logger = logging.getLogger(__name__)


def _curve_name(settings: dict, ifo: str) -> str:
    curve = settings["psd"]["noise_curve"]
    return curve[ifo] if isinstance(curve, dict) else curve


def simulated_asd(settings: dict, ifo: str, index: int) -> tuple[np.ndarray, dict]:
    """ASD number ``index`` of ``ifo`` on the band (float32) and its record (the variation drawn)."""
    cfg, dom = settings["asd_dataset"], build_domain(settings)
    rng = stage_rng(settings["seed"], "asd_dataset", list(settings["detectors"]).index(ifo), int(index))
    duration = float(cfg["segments"]) * dom.duration
    fs = dom.sampling_frequency
    n = int(round(duration * fs))
    freqs = np.arange(n // 2 + 1) / duration
    v = cfg["variation"]
    psd, record = varied_psd(freqs, load_noise_curve(_curve_name(settings, ifo), freqs), rng, v["scale_sigma"],
                             v["slope_sigma"], v["max_lines"], tuple(v["line_height"]), v["line_width"])
    data = simulate_noise(freqs, psd, duration, fs, rng)
    return np.sqrt(event_welch_psd(data, 1.0 / fs, dom, source=f"the simulated ASD {index} of {ifo}")).astype(np.float32), record


def file_windows(settings: dict) -> list[tuple[float, float]]:
    """The GPS windows ``[start, end)`` of the files source, at most ``asd_dataset.size`` of them."""
    cfg = settings["asd_dataset"]
    length = float(cfg["segments"]) * float(settings["domain"]["duration"])
    n = int(np.floor((float(cfg["gps_end"]) - float(cfg["gps_start"])) / length + 1e-9))
    return [(float(cfg["gps_start"]) + i * length, float(cfg["gps_start"]) + (i + 1) * length)
            for i in range(min(n, int(cfg["size"])))]


def file_asd(settings: dict, ifo: str, window: tuple[float, float]) -> tuple[np.ndarray | None, dict]:
    """The Welch ASD of ``ifo``'s file in ``window`` (None with the reason when the window has a gap or NaNs)."""
    cfg, dom = settings["asd_dataset"], build_domain(settings)
    path = cfg["strain_files"][ifo]
    try:
        _, dt, data = read_strain(path, ifo, window[0], window[1], channel=(cfg.get("channels") or {}).get(ifo))
    except StrainError as exc:
        return None, {"gps_start": window[0], "gps_end": window[1], "skipped": str(exc)}
    asd = np.sqrt(event_welch_psd(data, dt, dom, source=f"the Welch PSD of {ifo} from '{path}'")).astype(np.float32)
    return asd, {"gps_start": window[0], "gps_end": window[1]}


def _chunk(settings: dict, ifo: str, items: list) -> list[tuple]:
    if settings["asd_dataset"]["source"] == "simulated":
        return [simulated_asd(settings, ifo, i) for i in items]
    return [file_asd(settings, ifo, w) for w in items]


def run_asd_dataset_stage(settings: dict, *, out_path, plot_path=None, threads: int = 1) -> dict:
    """Make the ASD dataset (``asd_dataset.size`` ASDs per detector), write it and the spread plot."""
    cfg = settings["asd_dataset"]
    dom = build_domain(settings)
    if cfg["source"] == "simulated":
        items = list(range(int(cfg["size"])))
    else:
        items = file_windows(settings)
        if not items:
            raise GwnpeError(
                f"asd_dataset: gps_start {cfg['gps_start']} to gps_end {cfg['gps_end']} holds no window of "
                f"asd_dataset.segments x domain.duration = {cfg['segments'] * dom.duration:g} s; widen the span.")
    chunk = max(1, int(cfg.get("chunk_size") or 50))
    tasks = [(ifo, items[i:i + chunk]) for ifo in settings["detectors"] for i in range(0, len(items), chunk)]
    with optional_client(settings.get("dask"), threads) as client:
        if client is None:
            done = [_chunk(settings, ifo, part) for ifo, part in tasks]
        else:
            done = client.gather(client.map(_chunk, [settings] * len(tasks), [t[0] for t in tasks],
                                            [t[1] for t in tasks], pure=False))
    asds, records = {ifo: [] for ifo in settings["detectors"]}, {ifo: [] for ifo in settings["detectors"]}
    for (ifo, _), results in zip(tasks, done):
        for asd, record in results:
            records[ifo].append(record)
            if asd is not None:
                asds[ifo].append(asd)
    skipped = {ifo: sum("skipped" in r for r in records[ifo]) for ifo in records}
    for ifo in asds:
        if not asds[ifo]:
            raise GwnpeError(f"asd_dataset: no usable window of {ifo} (all {skipped[ifo]} had gaps or NaNs; first: "
                             f"{records[ifo][0].get('skipped')}); choose another span.")
        if skipped[ifo]:
            logger.warning("asd_dataset: %d of %d windows of %s skipped (gaps or NaNs)", skipped[ifo], len(records[ifo]), ifo)
    dataset = ASDDataset(dom.frequencies, {k: np.stack(v) for k, v in asds.items()}, records)
    prov = make_provenance("asd_dataset", stage_settings(settings, "asd_dataset"))
    write_asd_dataset(out_path, dataset, prov)
    if plot_path is not None:
        from ..diagnostics.plots import asd_spread_figure

        reference = ({ifo: np.sqrt(load_noise_curve(_curve_name(settings, ifo), dom.frequencies))
                      for ifo in settings["detectors"]} if cfg["source"] == "simulated" else None)
        save_figure(asd_spread_figure(dom.frequencies, dataset.asds, reference), plot_path, dpi=100)
    summary = {ifo: len(v) for ifo, v in dataset.asds.items()}
    logger.info("asd_dataset: %s ASDs per detector on %d bins (%s)", summary, len(dom), cfg["source"])
    return {"asds": summary, "skipped": skipped}
