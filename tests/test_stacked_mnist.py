"""Stacked-MNIST: the mode metrics against direct computations on hand-made digit triples, the
builder's determinism and independent channels, the three-channel networks and plots, and the
published protocol's facts with the real classifier on 26,000 samples: the data themselves cover
(almost) all 1,000 modes, a collapsed generator exactly one."""
import math
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from bench import figures, files, metrics, mnist, spec
from bench.datasets import DATASETS
from bench.errors import BenchError
from methods.gan import MinimaxGAN
from methods.networks import build_networks


# ------------------------------------------------------------ mode metrics vs direct formulas
def test_mode_histogram_known_values():
    h = metrics.mode_histogram(torch.tensor([0, 0, 1, 2]), 4)  # p = (½, ¼, ¼, 0): the empty bin adds 0
    assert h == {"modes_covered": 3, "kl_modes": pytest.approx(0.5 * math.log(0.5 * 4) + 2 * 0.25 * math.log(0.25 * 4))}
    assert metrics.mode_histogram(torch.arange(10).repeat(3), 10) == {"modes_covered": 10, "kl_modes": 0.0}
    assert math.isnan(metrics.mode_histogram(torch.tensor([], dtype=torch.long), 5)["kl_modes"])


def test_stacked_modes_are_ordered_digit_triples():
    digits = torch.tensor([[3, 0, 7], [3, 0, 7], [7, 0, 3], [9, 9, 9]])  # modes 307 (twice), 703, 999
    kl = 0.5 * math.log(0.5 * 1000) + 2 * 0.25 * math.log(0.25 * 1000)
    assert metrics.stacked_mode_metrics(digits) == {"modes_covered": 3, "kl_modes": pytest.approx(kl)}
    every = torch.cartesian_prod(*[torch.arange(10)] * 3)  # each of the 1,000 triples once
    assert metrics.stacked_mode_metrics(every) == {"modes_covered": 1000, "kl_modes": pytest.approx(0, abs=1e-12)}
    collapsed = metrics.stacked_mode_metrics(torch.tensor([[4, 4, 4]] * 50))
    assert collapsed == {"modes_covered": 1, "kl_modes": pytest.approx(math.log(1000))}


# ------------------------------------------------------------ networks, storage, plots (no data)
@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_shared_networks_make_and_take_three_channels(arch):
    cfg = SimpleNamespace(arch=arch, noise_dim=10, width=128, depth=3)
    g, d = build_networks(DATASETS.get("stacked-mnist"), cfg, with_discriminator=True, inputs=2)
    images = g(torch.rand(4, 10))
    assert images.shape == (4, 3, 28, 28)
    assert d(MinimaxGAN(pack=2).packed(images)).shape == (2, 1)  # two 3-channel images: 6 input channels
    g1, d1 = build_networks(DATASETS.get("mnist"), cfg, with_discriminator=True, inputs=2)
    count = lambda m: sum(p.numel() for p in m.parameters())
    # MNIST's networks as before channels existed (stored runs stay valid)
    assert (count(g1), count(d1)) == {"mlp": (1149904, 934913), "dcgan": (213825, 139841)}[arch]


def test_three_channel_samples_are_stored_as_uint8_and_plotted_in_colour(tmp_path):
    red = torch.zeros(100, 3, 28, 28)
    red[:, 0] = 1
    stored = mnist.to_uint8(red)
    assert stored.shape == (100, 3, 28, 28) and stored.dtype == np.uint8 and stored[:, 0].min() == 255
    assert mnist.to_uint8(red[:, :1]).shape == (100, 28, 28)  # one channel: MNIST's stored layout, unchanged
    np.savez_compressed(tmp_path / "samples.npz", samples=stored)
    record = {"path": str(tmp_path), "samples_file": "samples.npz", "variant_id": "v", "spec": {"seed": 0},
              "final": {"fid": 1.0, "modes_covered": 1}}
    staged = files.Staged()  # the report writes its files together, at the end
    figures.plot_image_grids([record], {"v": "gan"}, tmp_path, "stacked", staged)
    staged.commit()
    grid = plt.imread(tmp_path / "stacked_gan.png")[..., :3]
    assert (grid[..., 0] - grid[..., 1]).max() > 0.9  # red pixels: the channels are R, G, B


# ------------------------------------------------------------ with the real MNIST files
@pytest.fixture(scope="module")
def stacked(data):
    return DATASETS.create("stacked-mnist")


def _labels(images: np.ndarray, pool: np.ndarray, pool_labels: np.ndarray) -> np.ndarray:
    """The label of each channel of uint8 stacks (n, 3, 28, 28), found by its exact bytes among the
    pool's images (a KeyError if a channel is not one of them)."""
    index = {image.tobytes(): label for image, label in zip(pool, pool_labels)}
    return np.array([[index[channel.tobytes()] for channel in stack] for stack in images])


def test_builder_is_deterministic_and_its_channels_are_independent_digits(data, stacked):
    again = DATASETS.create("stacked-mnist")
    batch = stacked.sample(600, torch.Generator().manual_seed(5))
    assert batch.shape == (600, 3, 28, 28) and batch.dtype == torch.float32 and 0 <= batch.min() <= batch.max() <= 1
    assert torch.equal(batch, again.sample(600, torch.Generator().manual_seed(5)))
    assert not torch.equal(batch, again.sample(600, torch.Generator().manual_seed(6)))
    _labels(mnist.to_uint8(batch), data["train_images"], data["train_labels"])  # every channel a training image
    held_out = stacked.held_out()
    assert held_out.shape == (26000, 3, 28, 28) and torch.equal(held_out, again.held_out())
    digits = _labels(mnist.to_uint8(held_out), data["test_images"], data["test_labels"])  # of test images
    # independent channels: two channels show the same digit as often as chance (Σ p_d² ≈ 0.1), and
    # the true triples fill the 1,000 modes almost evenly (sampling noise alone: KL ≈ 999/(2·26,000))
    assert 0.09 < (digits[:, 0] == digits[:, 1]).mean() < 0.11
    truth = metrics.stacked_mode_metrics(torch.from_numpy(digits))
    assert truth["modes_covered"] == 1000 and truth["kl_modes"] < 0.03


def test_gmn_defaults_scale_the_gmmn_recipe_to_three_channels(stacked):
    options = spec.resolve("gmn", "stacked-mnist").options("method")
    assert options["bandwidths"] == pytest.approx([math.sqrt(3 * s) for s in (2, 5, 10, 20, 40, 80)])
    assert options["root"] is True and options["estimator"] == "biased"
    with pytest.raises(BenchError, match="needs a dataset with an autoencoder"):
        spec.resolve("gmn", "stacked-mnist", method_options={"code_space": "autoencoder"})


@pytest.fixture(scope="module")
def reference(stacked):
    return stacked.reference()  # the MNIST classifier of the session (trained once), 78,000 images


def test_the_data_cover_almost_every_mode_on_26000_samples(stacked, reference):
    data_row = stacked.evaluate(stacked.calibration_samples()["train set"], reference)
    assert data_row["modes_covered"] >= 990 and data_row["kl_modes"] < 0.05
    per_channel = [data_row[f"fid_c{c}"] for c in range(3)]
    assert data_row["fid"] == pytest.approx(np.mean(per_channel))
    assert data_row["kid"] == pytest.approx(np.mean([data_row[f"kid_c{c}"] for c in range(3)]))
    assert max(per_channel) < 10 and "mmd2" in data_row and "energy" in data_row


def test_a_collapsed_generator_covers_one_mode(stacked, reference):
    one = stacked.sample(1, torch.Generator().manual_seed(0))
    collapsed = stacked.evaluate(one.expand(1000, -1, -1, -1), reference)  # the count needs no 26,000 copies
    assert collapsed["modes_covered"] == 1 and collapsed["kl_modes"] == pytest.approx(math.log(1000))
    assert collapsed["fid"] > 30
