"""Fashion-MNIST, which bench does not ship: the shared MNIST-format loader on small IDX files
written here (checked against a test table of md5 sums; the production table is the published
one), every way the files are found, every error path, and the per-dataset classifier cache with
a fake training (a real Fashion-MNIST LeNet is not trained in the tests)."""
import dataclasses
import gzip
import hashlib
import json

import numpy as np
import pytest
import torch

from bench import environment, mnist
from bench.cli import build_parser, main, study_arguments
from bench.datasets import DATASETS
from bench.errors import BenchError

SPLITS = {"train": 12, "t10k": 5}  # images per split


def idx(values: np.ndarray) -> bytes:
    """The IDX encoding: magic (0, 0, 0x08 = uint8, ndim), big-endian int32 sizes, the values."""
    return bytes([0, 0, 8, values.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in values.shape) \
        + values.astype(np.uint8).tobytes()


def fake_files(seed: int = 0) -> dict[str, bytes]:
    """Small Fashion-MNIST-format files, uncompressed: file name -> bytes."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in SPLITS.items():
        out[f"{split}-images-idx3-ubyte"] = idx(rng.integers(0, 256, (n, 28, 28)))
        out[f"{split}-labels-idx1-ubyte"] = idx(np.arange(n) % 10)
    return out


def write(folder, files: dict[str, bytes]) -> dict[str, str]:
    """The files gzipped into ``folder``; returns their md5 table (of the .gz files, as published)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = {}
    for name, data in files.items():
        packed = gzip.compress(data, mtime=0)
        (folder / f"{name}.gz").write_bytes(packed)
        table[name] = hashlib.md5(packed).hexdigest()
    return table


@pytest.fixture
def use_table(monkeypatch):
    """Check Fashion-MNIST against a table of the test's own; memoised loads cleared around it."""
    mnist.load.cache_clear()
    monkeypatch.delenv("BENCH_FASHION_MNIST_DIR", raising=False)

    def use(table):
        monkeypatch.setitem(mnist.SOURCES, "fashion-mnist", dataclasses.replace(mnist.SOURCES["fashion-mnist"],
                                                                                files=table))
        mnist.load.cache_clear()
    yield use
    mnist.load.cache_clear()
    mnist.classifier.cache_clear()


def load(folder=None):
    return mnist.load(None if folder is None else str(folder), download=False, source="fashion-mnist")


def test_published_checksums_are_torchvisions_of_the_gz_files():
    from torchvision.datasets import FashionMNIST
    source = mnist.SOURCES["fashion-mnist"]
    assert source.md5_of_gz and {f"{n}.gz": md5 for n, md5 in source.files.items()} == dict(FashionMNIST.resources)
    assert source.classes[0] == "T-shirt/top" and source.classes[9] == "Ankle boot"


def test_files_found_in_data_dir_environment_and_torchvision_layout(tmp_path, use_table, monkeypatch):
    files = fake_files()
    use_table(write(tmp_path / "flat", files))
    loaded = load(tmp_path / "flat")
    assert loaded["train_images"].shape == (12, 28, 28) and loaded["test_labels"].tolist() == [0, 1, 2, 3, 4]
    assert loaded["train_images"].tobytes() == files["train-images-idx3-ubyte"][16:]
    write(tmp_path / "root" / "FashionMNIST" / "raw", files)  # torchvision's root
    assert load(tmp_path / "root")["folder"] == str(tmp_path / "root" / "FashionMNIST" / "raw")
    mnist.load.cache_clear()
    monkeypatch.setenv("BENCH_FASHION_MNIST_DIR", str(tmp_path / "flat"))
    assert load()["folder"] == str(tmp_path / "flat")
    dataset = DATASETS.create("fashion-mnist", data_dir=str(tmp_path / "root"))
    assert dataset.train.shape == (12, 28, 28) and dataset.classes[1] == "Trouser"


def test_data_dir_goes_to_every_chosen_dataset_that_reads_files(tmp_path):
    args = build_parser().parse_args(["run", "--datasets", "mnist,fashion-mnist,stacked-mnist,ring8",
                                      "--data-dir", str(tmp_path)])
    options = study_arguments(args)["options"]
    assert {name: o["data_dir"] for name, o in options.items()} == {
        "mnist": str(tmp_path), "fashion-mnist": str(tmp_path), "stacked-mnist": str(tmp_path)}
    with pytest.raises(BenchError, match=r"--data-dir is for datasets read from files \(mnist, fashion-mnist"):
        study_arguments(build_parser().parse_args(["run", "--datasets", "ring8", "--data-dir", str(tmp_path)]))


def test_missing_files_are_a_clear_error_and_list_still_works(tmp_path, use_table, monkeypatch, capsys):
    with pytest.raises(BenchError, match=rf"(?s)Fashion-MNIST not found.*{tmp_path}.*--data-dir.*"
                                         r"BENCH_FASHION_MNIST_DIR.*does not ship Fashion-MNIST"):
        load(tmp_path)
    for name, data in fake_files().items():  # uncompressed only: the published sums are of the .gz files
        (tmp_path / name).write_bytes(data)
    with pytest.raises(BenchError, match=r"(?s)not found.*the \.gz files are needed"):
        load(tmp_path)
    monkeypatch.setenv(environment.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BenchError, match=r"(?s)Fashion-MNIST not found.*shared/data/fashion-mnist"):
        load()  # nothing named: the default places, listed
    assert main(["run", "--datasets", "fashion-mnist", "--methods", "gan", "--data-dir", str(tmp_path / "none"),
                 "--out", str(tmp_path / "res")]) == 2
    assert "Fashion-MNIST not found" in capsys.readouterr().err and not (tmp_path / "res").exists()
    assert main(["list"]) == 0 and "fashion-mnist" in capsys.readouterr().out


def test_wrong_md5_names_the_file_and_the_published_sum(tmp_path, use_table):
    table = write(tmp_path, fake_files())
    mnist.load.cache_clear()
    with pytest.raises(BenchError, match="md5 .* \\(of the .gz file\\), expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d"):
        load(tmp_path)  # the production table: these are not Fashion-MNIST
    use_table(table)
    write(tmp_path, {"t10k-labels-idx1-ubyte": idx(np.arange(5) % 10 + 1)})  # other content, valid gzip
    with pytest.raises(BenchError, match=f"t10k-labels-idx1-ubyte.gz has md5 .*expected {table['t10k-labels-idx1-ubyte']}"):
        load(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_damaged_gzip_is_a_clear_error(tmp_path, use_table, damage):
    table = write(tmp_path, fake_files())
    path = tmp_path / "train-images-idx3-ubyte.gz"
    packed = bytearray(path.read_bytes())
    if damage == "truncated":
        packed = packed[:-40]
    else:
        packed[30] ^= 0xFF  # inside the deflate stream: zlib's own error, or a failed CRC
    path.write_bytes(bytes(packed))
    use_table({**table, "train-images-idx3-ubyte": hashlib.md5(bytes(packed)).hexdigest()})  # md5 is not the catch
    with pytest.raises(BenchError, match="train-images-idx3-ubyte.gz cannot be read .*fetch it again"):
        load(tmp_path)


BAD_IDX = {
    "27 columns": ("train-images-idx3-ubyte", lambda: idx(np.zeros((12, 28, 27))), "28×27 pixels; .* are 28×28"),
    "not uint8": ("train-images-idx3-ubyte", lambda: bytes([0, 0, 0x0C, 3]) + idx(np.zeros((12, 28, 28)))[4:],
                  "not an IDX file of uint8 images .*header is 00000c03, expected 00000803"),
    "labels as images": ("train-labels-idx1-ubyte", lambda: idx(np.zeros((12, 28, 28))), "not an IDX file of uint8 labels"),
    "short payload": ("t10k-images-idx3-ubyte", lambda: idx(np.zeros((5, 28, 28)))[:-100],
                      r"announces \(5, 28, 28\) \(3920 bytes\) but it holds 3820"),
    "empty": ("t10k-labels-idx1-ubyte", lambda: b"", "header is empty"),
    "count mismatch": ("t10k-labels-idx1-ubyte", lambda: idx(np.zeros(4)), "5 images and 4 labels .* match one to one"),
    "label 10": ("train-labels-idx1-ubyte", lambda: idx(np.full(12, 10)), "labels up to 10: .* labels below 10"),
}


@pytest.mark.parametrize("case", list(BAD_IDX))
def test_malformed_idx_files_are_clear_errors(tmp_path, use_table, case):
    name, make, message = BAD_IDX[case]
    use_table(write(tmp_path, {**fake_files(), name: make()}))  # their md5 matches: the parser must catch them
    with pytest.raises(BenchError, match=message):
        load(tmp_path)


def test_classifier_is_cached_per_dataset(tmp_path, use_table, monkeypatch):
    """The caching path with a fake training (instant): fashion_lenet beside, never instead of, mnist_lenet."""
    use_table(write(tmp_path / "data", fake_files()))
    monkeypatch.setenv(environment.ENV_CACHE, str(tmp_path / "cache"))
    trained = []

    def fake_training(data, log=None):
        trained.append(len(data["train_images"]))
        torch.manual_seed(0)
        return mnist.LeNet(), 0.5
    monkeypatch.setattr(mnist, "train_classifier", fake_training)
    mnist.classifier.cache_clear()
    _, meta = mnist.classifier(str(tmp_path / "data"), source="fashion-mnist")
    mnist.classifier.cache_clear()
    model, again = mnist.classifier(str(tmp_path / "data"), source="fashion-mnist")  # from the cache
    assert trained == [12] and meta == again and meta["test_accuracy"] == 0.5
    assert meta["data_md5"] == mnist.SOURCES["fashion-mnist"].files
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["fashion_lenet.json", "fashion_lenet.pt"]
    assert mnist.load_cached_classifier(tmp_path / "cache", "fashion-mnist")[1] == meta
    with pytest.raises(FileNotFoundError):
        mnist.load_cached_classifier(tmp_path / "cache")  # MNIST's is another file
    with pytest.raises(ValueError, match="other data"):  # a cache of other Fashion-MNIST files is retrained
        mnist.load_cached(tmp_path / "cache", "fashion_lenet", mnist.LeNet, mnist.FILES)
    assert json.loads((tmp_path / "cache" / "fashion_lenet.json").read_text())["version"] == mnist.LeNet.version
