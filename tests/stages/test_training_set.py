"""Training-set stage: determinism across workers, layout, compression, failures, cluster settings."""

from __future__ import annotations

import copy
import hashlib
import weakref
from pathlib import Path

import h5py
import numpy as np
import pytest

from gwnpe.errors import TrainingSetError
from gwnpe.products.training_set import load_training_set
from gwnpe.provenance import stored_text
from gwnpe.stages import training_set as ts
from gwnpe.errors import ClusterError
from gwnpe.stages.cluster import dask_client, make_slurm_cluster, n_workers_for, slurm_cluster_kwargs
from gwnpe.stages.workflow import load_config
from gwnpe.errors import BasisError, GwnpeError, WaveformError
from gwnpe.gw.priors import fixed_parameters, intrinsic_keys, load_priors
from gwnpe.products.common import read_provenance
from gwnpe.gw.noise import whiten
from gwnpe.products.basis import load_basis
from gwnpe.gw.waveforms import LAL_ARGS, build_waveform_generator, generate_from_prior

from tests.conftest import REPO
N, CHUNK, K = 40, 10, 80


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def smooth_asd(f: np.ndarray) -> np.ndarray:
    """A smooth positive detector-like ASD [1/sqrt(Hz)]."""
    return 4e-24 * np.sqrt(1.0 + (40.0 / f) ** 8 + (f / 150.0) ** 2)


def write_prior(path: Path, chirp_mass: tuple[float, float]) -> Path:
    text = (REPO / "config/priors/default.prior").read_text()
    text = text.replace("minimum=20.0, maximum=40.0", f"minimum={chirp_mass[0]}, maximum={chirp_mass[1]}")
    assert f"minimum={chirp_mass[0]}" in text
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def settings():
    cfg = load_config(REPO / "config/tiny.yaml")
    cfg["priors"] = str(REPO / cfg["priors"])
    cfg["training_set"].update(size=N, chunk_size=CHUNK, retries=1)
    cfg["dask"].update(cluster="local", n_workers=2)
    return {k: cfg[k] for k in ("seed", "priors", "domain", "waveform", "training_set", "dask")}


@pytest.fixture(scope="module")
def basis(settings, tmp_path_factory):
    """A real reduced basis of K elements from 200 waveforms (numpy SVD), and its held-out power loss."""
    gen = build_waveform_generator(settings)
    priors = load_priors(settings["priors"])
    keys = intrinsic_keys(priors)
    _, hp, hc, _ = generate_from_prior(gen, priors, keys, 250, np.random.default_rng(2024), 0)
    asd = smooth_asd(gen.domain.frequencies)
    df = gen.domain.delta_f
    rows = whiten(np.concatenate([hp[:200], hc[:200]]), asd, df)
    V = np.linalg.svd(rows, full_matrices=False)[2].conj().T[:, :K]
    held = whiten(np.concatenate([hp[200:], hc[200:]]), asd, df)
    loss = 1.0 - np.sum(np.abs(held @ V) ** 2, axis=1) / np.sum(np.abs(held) ** 2, axis=1)
    path = tmp_path_factory.mktemp("basis") / "basis.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("V", data=V)
        f.create_dataset("asd_reference", data=asd)
        f.create_dataset("frequencies", data=gen.domain.frequencies)
        f.attrs["delta_f"] = df
    return {"path": path, "power_loss_max": float(loss.max())}


@pytest.fixture(scope="module")
def client():
    with dask_client({"cluster": "local", "n_workers": 2}, threads=2) as c:
        yield c


@pytest.fixture(scope="module")
def reference(settings, basis, client, tmp_path_factory):
    """The stage's output with the shared 2-worker client (seed 7)."""
    out = tmp_path_factory.mktemp("ref") / "training_set.h5"
    summary = ts.run_training_set_stage(settings, prior_path=settings["priors"], basis_path=basis["path"], out_path=out, threads=2, progress=False, client=client)
    return {"path": out, "sha": sha256(out), "summary": summary}


def run(settings, basis, out, client=None, **kw):
    return ts.run_training_set_stage(settings, prior_path=settings["priors"], basis_path=basis["path"], out_path=out, threads=2, progress=False, client=client, **kw)


def assert_no_leftovers(out: Path):
    assert not out.exists()
    assert not ts.chunk_dir_for(out).exists()
    assert not any(p.name.startswith(f".{out.name}.tmp") for p in out.parent.iterdir())


def test_chunk_bounds():
    assert ts.chunk_bounds(25, 10) == [(0, 10), (10, 10), (20, 5)]
    assert ts.chunk_bounds(10, 10) == [(0, 10)]
    assert ts.chunk_bounds(3, 10) == [(0, 3)]


def test_layout_and_provenance(settings, reference, basis):
    out = reference["path"]
    assert reference["summary"]["n"] == N and reference["summary"]["n_chunks"] == N // CHUNK
    assert reference["summary"]["workers"] == 2
    assert not ts.chunk_dir_for(out).exists()
    with h5py.File(out, "r") as f:
        assert sorted(f["parameters"]) == sorted(["chirp_mass", "mass_ratio", "theta_jn", "phase"])
        for k in f["parameters"]:
            assert f["parameters"][k].shape == (N,) and f["parameters"][k].dtype == np.float64
        for pol in ("h_plus", "h_cross"):
            assert f[pol].shape == (N, K) and f[pol].dtype == np.complex64
            assert np.all(np.isfinite(f[pol][...])) and np.all(np.abs(f[pol][...]).sum(axis=1) > 0)
        assert f.attrs["basis_size"] == K and f.attrs["n"] == N
    prov = read_provenance(out)
    assert prov["stage"] == "training_set"
    assert prov["settings"]["seed"] == settings["seed"]
    assert "chirp_mass" in stored_text(prov, prov["settings"]["prior_file"])
    assert "dask" not in prov["settings"]  # runtime only: must not change the bytes
    assert prov["inputs"]["basis"]["path"] == str(basis["path"])
    data = load_training_set(out)
    assert data.h_plus.shape == (N, K) and data.failures == [] and data.attrs["approximant"] == "IMRPhenomD"
    with load_training_set(out, lazy=True) as lazy:
        assert isinstance(lazy.h_cross, h5py.Dataset)
        np.testing.assert_array_equal(lazy.h_cross[3:5], data.h_cross[3:5])
        np.testing.assert_array_equal(lazy.parameters["phase"][...], data.parameters["phase"])
    # parameters lie in the prior
    assert np.all((data.parameters["chirp_mass"] >= 20) & (data.parameters["chirp_mass"] <= 40))


@pytest.mark.slow
def test_bytes_independent_of_workers_and_order(settings, basis, reference, client, tmp_path):
    one = copy.deepcopy(settings)
    one["dask"]["n_workers"] = 1
    s1 = run(one, basis, tmp_path / "one" / "training_set.h5")  # its own 1-worker LocalCluster
    assert s1["workers"] == 1
    assert sha256(tmp_path / "one" / "training_set.h5") == reference["sha"]

    # even chunks delayed: completion order differs from chunk order
    run(settings, basis, tmp_path / "slow" / "training_set.h5", client, fault=ts.FaultInjection(delay=0.5))
    assert sha256(tmp_path / "slow" / "training_set.h5") == reference["sha"]

    other = copy.deepcopy(settings)
    other["seed"] = settings["seed"] + 1
    run(other, basis, tmp_path / "seed" / "training_set.h5", client)
    a, b = load_training_set(reference["path"]), load_training_set(tmp_path / "seed" / "training_set.h5")
    assert not np.allclose(a.parameters["chirp_mass"], b.parameters["chirp_mass"])
    assert not np.allclose(a.h_plus, b.h_plus)


def test_coefficients_keep_whitened_power(settings, reference, basis):
    """sum |c|^2 = sum |whiten(h)|^2 up to the basis' projection loss (catches h @ V.conj())."""
    data = load_training_set(reference["path"])
    b = load_basis(basis["path"])
    gen = build_waveform_generator(settings)
    fixed = fixed_parameters(load_priors(settings["priors"]))
    rows = [0, 7, 19, 33]
    params = {**{k: np.full(len(rows), v) for k, v in fixed.items()}, **{k: v[rows] for k, v in data.parameters.items()}}
    lal = gen.to_lal(params)
    tol = 2 * basis["power_loss_max"] + 1e-4
    for j, i in enumerate(rows):
        hp, hc = gen.polarizations({k: lal[k][j] for k in LAL_ARGS})
        for h, c in ((hp, data.h_plus[i]), (hc, data.h_cross[i])):
            hw = whiten(h, b.asd_reference, b.delta_f)
            ratio = np.sum(np.abs(c.astype(complex)) ** 2) / np.sum(np.abs(hw) ** 2)
            assert 1 - tol <= ratio <= 1 + 1e-5, (i, ratio, tol)
            np.testing.assert_allclose(c, hw @ b.V, rtol=0, atol=1e-6 * np.abs(hw @ b.V).max())
            # the conjugated product would lose most of the power: the check above can tell
            wrong = np.sum(np.abs(hw @ b.V.conj()) ** 2) / np.sum(np.abs(hw) ** 2)
            assert wrong < 1 - 10 * tol, wrong


@pytest.mark.slow
def test_chunk_failing_after_retries_names_it_and_leaves_nothing(settings, basis, client, tmp_path):
    out = tmp_path / "training_set.h5"
    with pytest.raises(TrainingSetError) as err:
        run(settings, basis, out, client, fault=ts.FaultInjection(fail_chunk=1))
    msg = str(err.value)
    assert "chunk 1 " in msg and f"stage_rng(seed={settings['seed']}, 'training_set', 1)" in msg
    assert f"{CHUNK} waveforms" in msg and "injected fault" in msg and "chirp_mass" in msg
    assert isinstance(err.value, GwnpeError)
    assert_no_leftovers(out)


@pytest.mark.slow
def test_chunk_failing_once_is_retried(settings, basis, reference, client, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    out = tmp_path / "training_set.h5"
    run(settings, basis, out, client, fault=ts.FaultInjection(fail_chunk=2, fail_times=1, state_dir=str(state)))
    assert len(list(state.iterdir())) == 2  # failed once, succeeded on the retry
    assert sha256(out) == reference["sha"]


def test_all_draws_refused_raises_waveform_error(settings, basis, client, tmp_path):
    heavy = copy.deepcopy(settings)
    heavy["priors"] = str(write_prior(tmp_path / "heavy.prior", (1000.0, 1200.0)))  # IMRPhenomD cutoff < f_min
    out = tmp_path / "training_set.h5"
    with pytest.raises(WaveformError, match="max_failure_fraction") as err:
        run(heavy, basis, out, client)
    assert "fCut" in str(err.value) or "Input domain error" in str(err.value)
    assert_no_leftovers(out)


@pytest.mark.slow
def test_refused_draws_recorded_or_fatal(settings, basis, client, tmp_path):
    mixed = copy.deepcopy(settings)
    # ~20 % refused by IMRPhenomD; with seed 7 chunks 0-3 see 0, 5, 3 and 2 refusals
    mixed["priors"] = str(write_prior(tmp_path / "mixed.prior", (700.0, 800.0)))
    mixed["waveform"] = {**settings["waveform"], "max_failure_fraction": 1.0}
    out = tmp_path / "ok" / "training_set.h5"
    summary = run(mixed, basis, out, client)
    data = load_training_set(out)
    assert summary["failures"] == len(data.failures) > 0
    chunks = [r["chunk"] for r in data.failures]
    assert chunks == sorted(chunks)
    for rec in data.failures:
        assert 0 <= rec["index"] < N and rec["index"] // CHUNK == rec["chunk"] and rec["reason"]
        assert set(rec["parameters"]) == set(data.parameters)

    # 6 of 40 allowed: no chunk exceeds it alone, their sum does
    mixed["waveform"]["max_failure_fraction"] = 0.15
    out = tmp_path / "bad" / "training_set.h5"
    with pytest.raises(WaveformError, match="max_failure_fraction") as err:
        run(mixed, basis, out, client)
    assert f"of {N} training-set draws were refused" in str(err.value) and "First failure (chunk 1" in str(err.value)
    assert_no_leftovers(out)


def test_merge_holds_one_chunk_at_a_time(settings, basis, client, tmp_path, monkeypatch):
    """The client reads the chunk files in order and frees each before reading the next."""
    import gwnpe.products.training_set as files

    read = files.read_chunk
    seen, alive = [], []

    def spy(path, keys, n, k):
        assert all(r() is None for r in alive), "a previous chunk is still held in memory"
        params, hp, hc = read(path, keys, n, k)
        seen.append((Path(path).name, hp.shape))
        alive[:] = [weakref.ref(hp), weakref.ref(hc), *(weakref.ref(v) for v in params.values())]
        return params, hp, hc

    monkeypatch.setattr(files, "read_chunk", spy)
    small = copy.deepcopy(settings)
    small["training_set"].update(size=25)
    run(small, basis, tmp_path / "training_set.h5", client)
    assert seen == [("chunk-000000.h5", (10, K)), ("chunk-000001.h5", (10, K)), ("chunk-000002.h5", (5, K))]


def test_basis_on_other_grid_is_refused(settings, basis, tmp_path):
    other = copy.deepcopy(settings)
    other["domain"]["f_max"] = 200.0
    out = tmp_path / "training_set.h5"
    with pytest.raises(BasisError, match="rerun the svd stage"):
        run(other, basis, out)  # fails before any cluster starts
    assert_no_leftovers(out)


def test_unreachable_scheduler_names_dask_address():
    with pytest.raises(ClusterError, match="dask.address"):
        with dask_client({"cluster": "address", "address": "tcp://127.0.0.1:9", "n_workers": None}, threads=1, timeout=2):
            pass


def test_n_workers_default_is_threads():
    assert n_workers_for({"n_workers": None}, 3) == 3
    assert n_workers_for({"n_workers": 5}, 3) == 5


def test_slurm_settings_translation(monkeypatch):
    """SLURMCluster gets the dask.slurm settings; nothing is submitted."""
    import dask_jobqueue.core

    def no_submit(*args, **kwargs):
        raise AssertionError("a Slurm job was submitted")

    monkeypatch.setattr(dask_jobqueue.core.Job, "_submit_job", no_submit)
    dask_settings = {
        "cluster": "slurm",
        "n_workers": 4,
        "slurm": {
            "queue": "compute",
            "account": "gw-proj",
            "cores": 2,
            "memory": "3GB",
            "walltime": "02:30:00",
            "job_extra_directives": ["--constraint=intel"],
            "scheduler_host": "127.0.0.1",
        },
    }
    kw = slurm_cluster_kwargs(dask_settings)
    assert kw["processes"] == 1 and kw["cores"] == 2 and kw["scheduler_options"] == {"host": "127.0.0.1"}
    assert "scheduler_options" not in slurm_cluster_kwargs({"slurm": {**dask_settings["slurm"], "scheduler_host": None}})
    cluster = make_slurm_cluster(dask_settings)
    try:
        script = cluster.job_script()
        for line in (
            "#SBATCH -p compute",
            "#SBATCH -A gw-proj",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH -t 02:30:00",
            "#SBATCH --constraint=intel",
            "export OMP_NUM_THREADS=1",
        ):
            assert line in script, (line, script)
        assert "#SBATCH --mem=3G" in script and "--nthreads 2" in script
        assert "127.0.0.1" in cluster.scheduler_address
        assert len(cluster.workers) == 0
    finally:
        cluster.close()
