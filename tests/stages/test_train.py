"""The train stage: learning, outputs, checkpoints that resume, the model file round trip."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from gwnpe.errors import GwnpeError
from gwnpe.provenance import input_provenance
from gwnpe.products.model import load_model
from gwnpe.nn.training import evaluate

from tests.conftest import simulator, train_tiny, training_data


def _train(p, tmp, epochs, on_epoch_end=None, name="m", **training):
    return train_tiny(p, tmp / name, epochs, on_epoch_end=on_epoch_end, **training)


@pytest.fixture(scope="module")
def trained(tiny_model):
    return tiny_model


def test_loss_decreases_and_outputs_are_written(trained):
    out, hist, _ = trained
    assert [r["epoch"] for r in hist] == list(range(1, 7))
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 0.2
    assert hist[-1]["validation_loss"] < hist[0]["validation_loss"]
    lines = (out / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,validation_loss,learning_rate"
    assert len(lines) == 7
    rows = (out / "throughput.csv").read_text().splitlines()
    assert rows[0] == "epoch,wall_time,samples_per_second" and len(rows) == 7 and float(rows[1].split(",")[2]) > 0
    assert (out / "loss.png").stat().st_size > 5000
    assert not (out / "checkpoint.pt").exists()  # removed once the model is written


def test_untrained_model_is_visibly_worse(trained, tiny_products, tmp_path):
    out, _, _ = trained
    out0, hist0, cfg = _train(tiny_products, tmp_path, epochs=0, name="zero")
    assert hist0 == []
    sim, _, _ = simulator(tiny_products, dtype=torch.float32)
    data = training_data(tiny_products["training_set"])
    idx = torch.arange(360, 400)
    m_trained, m_zero = load_model(out / "model.pt"), load_model(out0 / "model.pt")
    names = m_trained.parameter_names
    v1 = evaluate(m_trained, sim, data, idx, names, 64, cfg["seed"])
    v0 = evaluate(m_zero, sim, data, idx, names, 64, cfg["seed"])
    assert v0 > v1 + 0.2


def test_model_round_trips_through_save_and_load(trained, tiny_products):
    out, _, _ = trained
    m1 = load_model(out / "model.pt")
    m2 = load_model(out / "model.pt")
    sim, dom, _ = simulator(tiny_products, dtype=torch.float32)
    theta, d = sim.batch(training_data(tiny_products["training_set"]), torch.arange(8), m1.parameter_names,
                         torch.Generator().manual_seed(3))
    with torch.no_grad():
        np.testing.assert_array_equal(m1.log_prob(theta, d).numpy(), m2.log_prob(theta, d).numpy())
    assert m1.provenance["stage"] == "train"
    assert input_provenance(m1.provenance, "training_set")["stage"] == "training_set"
    # every ancestor is stored once: training set -> basis -> bank and PSDs, the PSDs shared with the model itself
    assert {r["stage"] for r in m1.provenance["records"].values()} == {"training_set", "svd", "bank", "psd"}
    assert len(m1.provenance["records"]) == 5  # training set, basis, bank, two PSDs
    assert input_provenance(m1.provenance, "psd_H1") == input_provenance(input_provenance(m1.provenance, "basis"), "psd_H1")


def test_resume_after_kill_gives_identical_weights(tiny_products, tmp_path):
    """Killed after epoch 2 of 4, rerun: continuous history and (CPU) the uninterrupted run's weights."""

    class Killed(Exception):
        pass

    def kill_after_2(epoch, history):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        _train(tiny_products, tmp_path, epochs=4, on_epoch_end=kill_after_2, name="resumed")
    assert (tmp_path / "resumed/checkpoint.pt").exists()
    assert not (tmp_path / "resumed/model.pt").exists()
    _, hist, _ = _train(tiny_products, tmp_path, epochs=4, name="resumed")
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4]
    _, hist_ref, _ = _train(tiny_products, tmp_path, epochs=4, name="reference")
    a = torch.load(tmp_path / "resumed/model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "reference/model.pt", weights_only=False)["state_dict"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["train_loss"] for r in hist] == [r["train_loss"] for r in hist_ref]


def test_checkpoint_of_other_settings_is_not_resumed(tiny_products, tmp_path):
    def stop(epoch, history):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(tiny_products, tmp_path, epochs=3, on_epoch_end=stop, name="x")
    _, hist, _ = _train(tiny_products, tmp_path, epochs=3, name="x", learning_rate=5e-4)
    assert [r["epoch"] for r in hist] == [1, 2, 3]


def test_cuda_requested_without_gpu_is_a_clear_error(tiny_products, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(GwnpeError, match="no CUDA GPU"):
        _train(tiny_products, tmp_path, epochs=1, device="cuda")
