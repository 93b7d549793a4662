"""MNIST: the loader against its checksums and known facts, every feature metric against an
independent computation, the calibration facts with the real classifier, and a tiny run."""
import gzip
import itertools
import json
import shutil

import numpy as np
import pytest
import scipy.linalg
import torch

from bench import metrics, mnist
from bench.cli import main
from bench.errors import BenchError

TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_loader_checksums_and_known_facts(data):
    assert data["train_images"].shape == (60000, 28, 28) and data["test_images"].shape == (10000, 28, 28)
    assert np.bincount(data["train_labels"]).tolist() == TRAIN_CLASS_COUNTS
    assert data["test_labels"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_torchvision_layout_uncompressed_is_accepted(data, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in mnist.FILES:
        (raw / name).write_bytes(gzip.decompress((_source(data) / f"{name}.gz").read_bytes()))
    mnist.load.cache_clear()
    loaded = mnist.load(str(tmp_path), download=False)
    assert np.array_equal(loaded["test_labels"], data["test_labels"])


def _source(data):
    from pathlib import Path
    return Path(data["folder"])


def test_corrupt_file_is_a_clear_error(data, tmp_path):
    for name in mnist.FILES:
        shutil.copy(_source(data) / f"{name}.gz", tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[100] ^= 1
    labels.write_bytes(gzip.compress(bytes(raw)))
    mnist.load.cache_clear()
    with pytest.raises(BenchError, match="md5 .* expected 27ae3e4e09519cfbb04c329615203637"):
        mnist.load(str(tmp_path), download=False)


def test_missing_named_folder_is_an_error_never_a_fallback(tmp_path):
    mnist.load.cache_clear()
    with pytest.raises(BenchError, match=f"(?s)MNIST not found.*{tmp_path}.*--data-dir"):
        mnist.load(str(tmp_path))


# --------------------------------------------------------------- metrics vs direct formulas
def test_frechet_distance_matches_scipy_sqrtm():
    a, b = torch.randn(60, 5, dtype=torch.float64), torch.randn(80, 5, dtype=torch.float64) * 1.5 + 0.3
    ca, cb = np.cov(a.numpy().T), np.cov(b.numpy().T)
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum().item() + np.trace(ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real)
    assert metrics.frechet_distance(a, b) == pytest.approx(ref, rel=1e-8)
    assert metrics.frechet_distance(a, a) == pytest.approx(0, abs=1e-8)


def _loop_kid_mmd2(x, y):
    """Unbiased MMD² with the KID kernel (xᵀy/d + 1)³, as explicit loops over pairs."""
    d = x.shape[1]
    k = lambda u, v: (float(u @ v) / d + 1) ** 3
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    xy = sum(k(a, b) for a in x for b in y) / (n * m)
    return xx + yy - 2 * xy


def test_kid_matches_double_loop():
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64) + 0.5
    assert metrics.polynomial_mmd2_unbiased(x, y).item() == pytest.approx(_loop_kid_mmd2(x, y))
    # subsets holding every sample: each is the full set permuted, so the same value, std 0
    mean, std = metrics.kernel_inception_distance(x[:5], y, subsets=3, subset_size=5)
    assert mean == pytest.approx(_loop_kid_mmd2(x[:5], y)) and std < 1e-12


def test_kid_on_subsets_smaller_than_the_sets_matches_loops_over_the_same_subsets():
    """Bińkowski et al. 2018: each subset draws real then fake indices without replacement from
    one generator seeded with ``seed``; mean and (n−1) std of the per-subset values."""
    x, y = torch.randn(12, 3, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64) * 1.5 + 0.3
    gen, values = torch.Generator().manual_seed(7), []
    for _ in range(5):
        ix, iy = torch.randperm(12, generator=gen)[:4], torch.randperm(10, generator=gen)[:4]
        values.append(_loop_kid_mmd2(x[ix], y[iy]))
    mean, std = metrics.kernel_inception_distance(x, y, subsets=5, subset_size=4, seed=7)
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))
    assert std > 0  # the subsets differ: the example exercises the subsetting


def test_kid_subset_mean_is_the_full_sets_unbiased_mmd2_in_expectation():
    """The unbiased estimator on random subsets averages to its value on the whole sets (a
    U-statistic), independently of how the subsets are drawn."""
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64) + 0.7
    mean, std = metrics.kernel_inception_distance(x, y, subsets=4000, subset_size=4)
    assert mean == pytest.approx(_loop_kid_mmd2(x, y), abs=5 * std / 4000 ** 0.5)


def _brute_radii(x, k):
    return [sorted(float((x[i] - x[j]).norm()) for j in range(len(x)) if j != i)[k - 1] for i in range(len(x))]


def test_precision_recall_density_coverage_match_brute_force():
    real, fake = torch.randn(25, 3, dtype=torch.float64), torch.randn(20, 3, dtype=torch.float64) * 0.5 + 1.0
    d = lambda a, b: float((a - b).norm())
    rr3, rf3, rr5 = _brute_radii(real, 3), _brute_radii(fake, 3), _brute_radii(real, 5)
    precision = np.mean([any(d(f, r) <= rr3[i] for i, r in enumerate(real)) for f in fake])
    recall = np.mean([any(d(r, f) <= rf3[j] for j, f in enumerate(fake)) for r in real])
    density = sum(d(f, r) <= rr5[i] for f in fake for i, r in enumerate(real)) / (5 * len(fake))
    coverage = np.mean([min(d(r, f) for f in fake) <= rr5[i] for i, r in enumerate(real)])
    assert metrics.precision_recall(real, fake, k=3) == pytest.approx((precision, recall))
    assert metrics.density_coverage(real, fake, k=5) == pytest.approx((density, coverage))
    assert 0 < precision < 1 and 0 < recall < 1  # the example exercises both sides


def test_classifier_score_and_class_histogram_known_values():
    one_hot = torch.eye(10).repeat(30, 1)  # every digit equally often, each confidently
    assert metrics.classifier_score(one_hot) == pytest.approx(10.0, rel=1e-6)
    assert metrics.classifier_score(torch.full((50, 10), 0.1)) == pytest.approx(1.0)
    assert metrics.class_histogram(one_hot) == {"digits_covered": 10, "kl_digits": pytest.approx(0.0)}
    collapsed = torch.zeros(200, 10)
    collapsed[:, 3] = 1
    collapsed[0] = torch.eye(10)[5]  # one stray sample in 200 (< 1 %) does not cover a digit
    h = metrics.class_histogram(collapsed)
    assert h["digits_covered"] == 1 and h["kl_digits"] == pytest.approx(0.995 * np.log(9.95) + 0.005 * np.log(0.05))


# ------------------------------------------------------------ with the real classifier
@pytest.fixture(scope="module")
def classifier(data):
    return mnist.classifier()


def test_classifier_accuracy_and_calibration_facts(data, classifier):
    model, meta = classifier
    predicted = mnist.features_and_probs(model, mnist.to_float(data["test_images"]))[1].argmax(1).numpy()
    accuracy = float((predicted == data["test_labels"]).mean())  # recomputed, not the cache's record
    assert accuracy >= mnist.SOURCES["mnist"].min_accuracy and meta["test_accuracy"] == pytest.approx(accuracy)
    test, _ = mnist.features_and_probs(model, mnist.to_float(data["test_images"]))
    train, _ = mnist.features_and_probs(model, mnist.to_float(data["train_images"][:10000]))
    noise, _ = mnist.features_and_probs(model, torch.rand(10000, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    fd_train, fd_noise = metrics.frechet_distance(test, train), metrics.frechet_distance(test, noise)
    assert fd_train < 0.02 * fd_noise
    precision, recall = metrics.precision_recall(test.float(), train.float())
    assert precision > 0.8 and recall > 0.8
    assert metrics.density_coverage(test.float(), noise.float())[1] < 0.05 < 0.8 < metrics.density_coverage(
        test.float(), train.float())[1]


def test_tampered_classifier_cache_is_rejected(classifier, tmp_path):
    folder = mnist.cache_dir()
    for name in ("mnist_lenet.pt", "mnist_lenet.json"):
        shutil.copy(folder / name, tmp_path)
    model, _ = mnist.load_cached_classifier(tmp_path)  # an intact copy loads
    weights = tmp_path / "mnist_lenet.pt"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="sha256"):
        mnist.load_cached_classifier(tmp_path)
    meta = json.loads((tmp_path / "mnist_lenet.json").read_text())
    (tmp_path / "mnist_lenet.json").write_text(json.dumps({**meta, "version": -1}))
    with pytest.raises(ValueError, match="architecture version or other data"):
        mnist.load_cached_classifier(tmp_path)


def test_tiny_end_to_end_mnist_run(classifier, tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", "--datasets", "mnist", "--methods", "gmn,nsgan", "--steps", "3", "--eval-points", "1",
                 "--batch-size", "64", "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for row in ("gmn", "nsgan", "train set", "uniform noise"):
        assert row in printed
    folder = next(out.glob("runs/mnist/gmn/seed0-*"))
    record = json.loads((folder / "record.json").read_text())
    samples = np.load(folder / record["samples_file"])["samples"]
    assert samples.shape == (10000, 28, 28) and samples.dtype == np.uint8
    assert record["method_settings"]["root"] is True and len(record["method_settings"]["bandwidths"]) == 6
    for metric in ("fid", "kid", "precision", "recall", "density", "coverage", "classifier_score",
                   "digits_covered", "kl_digits", "mmd2"):
        assert metric in record["final"]
    assert (out / "plots/mnist_quick_gmn.png").exists() and (out / "plots/mnist_quick_samples.png").exists()


def test_gmmn_ae_variant_trains_in_code_space_and_outputs_images(classifier, tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", "--datasets", "mnist", "--methods", "gmn", "--set", "gmn.code_space=autoencoder",
                 "--steps", "3", "--eval-points", "1", "--batch-size", "64", "--no-progress", "--device", "cpu",
                 "--out", str(out)]) == 0
    folder = next(out.glob("runs/mnist/gmn/seed0-*"))
    record = json.loads((folder / "record.json").read_text())
    settings = record["method_settings"]
    assert settings["code_space"] == "autoencoder" and settings["root"] is True
    assert settings["bandwidths"] is None  # the median heuristic, on the codes
    assert max(record["method_learned"]["bandwidths_"]) < 5  # from the codes' scale, not the pixel-space recipe
    assert np.load(folder / record["samples_file"])["samples"].shape == (10000, 28, 28)
    autoencoder, meta = mnist.autoencoder()
    data = mnist.load()
    test, mean_image = mnist.to_float(data["test_images"]), mnist.to_float(data["train_images"]).mean(0)
    with torch.no_grad():  # recomputed from the weights, not read back from the cache's record
        mse = float(sum((autoencoder.decoder(autoencoder.encoder(c)) - c).square().sum() for c in test.split(2000))
                    / test.numel())
    baseline = float((test - mean_image).square().mean())  # knowing nothing about the digit
    assert mse < 0.8 * baseline  # the codes carry the digit through the decoder
    assert meta["test_mse"] == pytest.approx(mse, rel=1e-4)


def test_autoencoder_variant_on_a_dataset_without_one_exits_2(tmp_path, capsys):
    assert main(["run", "--datasets", "ring8", "--methods", "gmn", "--set", "gmn.code_space=autoencoder",
                 "--out", str(tmp_path / "res")]) == 2
    assert "needs a dataset with an autoencoder" in capsys.readouterr().err
