"""MNIST-format data sets (MNIST, Fashion-MNIST), checked against their published checksums, and
the classifier whose features measure sample quality (no Inception weights here, and MNIST is not
what Inception saw): one loader and one cached classifier per data set."""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
import math
import os
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench import files
from bench.environment import PROJECT_ROOT, cache_dir
from bench.errors import BenchError

# MNIST: md5 of the UNCOMPRESSED files (../shared/data/README.md). torchvision's table holds md5 of
# its .gz files, which a recompressed copy (../shared/data/mnist is one) does not match.
FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
ENV_DATA = "BENCH_MNIST_DIR"


@dataclasses.dataclass(frozen=True)
class Source:
    """An MNIST-format data set: its four IDX files (train/t10k images/labels, 28×28 uint8), their
    published md5 sums, where they are looked for, and its cached networks' file names."""
    name: str               # in messages
    files: dict             # file name (without .gz) -> published md5
    md5_of_gz: bool         # the md5 sums are of the .gz files (then only .gz files are accepted), else uncompressed
    env: str                # environment variable naming the folder
    shared: str             # the folder beside the project: ../shared/data/<shared>
    torchvision: str        # torchvision's class, and its layout <root>/<torchvision>/raw
    cache_prefix: str       # <prefix>_lenet.pt, <prefix>_autoencoder.pt in the cache
    classes: tuple          # label i names classes[i]
    min_accuracy: float     # the LeNet's test accuracy that the tests require


SOURCES = {
    "mnist": Source("MNIST", FILES, False, ENV_DATA, "mnist", "MNIST", "mnist", tuple("0123456789"), 0.99),
    # Fashion-MNIST: md5 of the .GZ files, the only published ones (torchvision.datasets.FashionMNIST.resources),
    # so only the original .gz files can be checked: an uncompressed or recompressed copy cannot.
    "fashion-mnist": Source(
        "Fashion-MNIST", {"train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                          "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
                          "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
                          "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"},
        True, "BENCH_FASHION_MNIST_DIR", "fashion-mnist", "FashionMNIST", "fashion",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        0.88),  # LeNet-style networks reach about 90 % on Fashion-MNIST (Xiao et al. 2017), not 99 %
}


def source_of(name: str) -> Source:
    if name not in SOURCES:
        raise BenchError(f"unknown MNIST-format data set {name!r}; choose from: {', '.join(SOURCES)}")
    return SOURCES[name]


def candidate_dirs(explicit: str | Path | None = None, source: str = "mnist") -> list[Path]:
    """Where the four files are looked for, in order. A folder the user names is the only one."""
    src = source_of(source)
    if explicit:
        dirs = [Path(explicit)]
    elif os.environ.get(src.env):
        dirs = [Path(os.environ[src.env])]
    else:  # beside the project: from where it is run (its root), and from the package's checkout
        roots = list(dict.fromkeys([Path.cwd().resolve(), PROJECT_ROOT]))
        dirs = [r.parent / "shared" / "data" / src.shared for r in roots] + [r / "data" / src.torchvision / "raw"
                                                                              for r in roots]
        dirs.append(cache_dir() / src.torchvision / "raw")
    raw = Path(src.torchvision) / "raw"
    return [d / raw if (d / raw).is_dir() else d for d in dirs]  # torchvision's root


def file_paths(folder: Path, name: str, src: Source) -> list[Path]:
    """The paths that may hold file ``name`` in ``folder``, in order of preference."""
    return [folder / f"{name}.gz"] if src.md5_of_gz else [folder / name, folder / f"{name}.gz"]


def read_checked(folder: Path, name: str, src: Source) -> tuple[Path, bytes]:
    """File ``name``'s path and uncompressed bytes, its md5 checked against ``src.files`` (the md5
    of the .gz file or of the uncompressed bytes, whichever ``src`` publishes)."""
    path = next(p for p in file_paths(folder, name, src) if p.exists())
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as err:  # zlib.error: a damaged deflate stream (not an OSError)
        raise BenchError(f"{src.name} file {path} cannot be read ({err}); delete it and fetch it again") from err
    digest, md5 = hashlib.md5(raw if src.md5_of_gz else data).hexdigest(), src.files[name]
    if digest != md5:
        raise BenchError(f"{src.name} file {path} has md5 {digest}{' (of the .gz file)' if src.md5_of_gz else ''}, "
                         f"expected {md5}: it is corrupt or not {src.name}. Replace it with the original file.")
    return path, data


def parse_idx(data: bytes, path: Path, images: bool) -> np.ndarray:
    """IDX format: magic (0, 0, dtype 0x08 = uint8, ndim), then ndim big-endian int32 sizes, then
    the values; images are (n, 28, 28), labels (n,)."""
    ndim, what = (3, "images (n, 28, 28)") if images else (1, "labels (n,)")
    if len(data) < 4 + 4 * ndim or data[:3] != b"\0\0\x08" or data[3] != ndim:
        raise BenchError(f"{path} is not an IDX file of uint8 {what}: its header is {data[:4].hex() or 'empty'}, "
                         f"expected 000008{ndim:02x}")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if images and shape[1:] != (28, 28):
        raise BenchError(f"{path} holds images of {shape[1]}×{shape[2]} pixels; MNIST-format images are 28×28")
    offset = 4 + 4 * ndim
    if len(data) - offset != math.prod(shape):
        raise BenchError(f"{path}: its header announces {shape} ({math.prod(shape)} bytes) but it holds "
                         f"{len(data) - offset} bytes of values; replace it with the original file")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _download(root: Path, src: Source) -> None:
    try:
        import torchvision.datasets
        dataset = getattr(torchvision.datasets, src.torchvision)
        dataset(str(root), train=True, download=True)
        dataset(str(root), train=False, download=True)
    except Exception as err:  # offline, blocked, partial: say so, never fall back to other data
        raise OSError(f"{type(err).__name__}: {' '.join(str(err).split())}") from err  # one line in the message


@functools.cache
def load(data_dir: str | None = None, download: bool = True, source: str = "mnist") -> dict[str, np.ndarray]:
    """{train,test}_{images,labels} of ``source`` (a key of SOURCES) as uint8 arrays, each file's md5 checked."""
    src = source_of(source)
    looked = candidate_dirs(data_dir, source)
    found = lambda d: all(any(p.exists() for p in file_paths(d, n, src)) for n in src.files)
    folder = next((d for d in looked if found(d)), None)
    download = download and not data_dir and not os.environ.get(src.env)  # a named folder is not replaced
    download_error = ""
    if folder is None and download:
        try:
            _download(cache_dir(), src)
            folder = cache_dir() / src.torchvision / "raw"
        except OSError as err:
            download_error = str(err)
    if folder is None:
        where = "\n  ".join(str(d) for d in looked)
        files = ", ".join(f"{n}.gz" for n in src.files) if src.md5_of_gz else ", ".join(src.files) + ", optionally .gz"
        gz_note = (f"\n{src.name}'s md5 sums are published for the .gz files, so the .gz files are needed "
                   "(torchvision's raw folder keeps them)") if src.md5_of_gz else ""
        raise BenchError(
            f"{src.name} not found. Looked for the four files ({files}) in:\n  " + where + gz_note
            + f"\nPass --data-dir FOLDER (the files, or a torchvision root holding {src.torchvision}/raw) or set "
            f"{src.env}. bench does not ship {src.name}; on a machine with a network, torchvision's downloader "
            "fetches it when no folder is named" + (f" (it failed here: {download_error})" if download_error else ""))
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        parsed = {}
        for kind, idx in (("images", "idx3"), ("labels", "idx1")):
            name = f"{prefix}-{kind}-{idx}-ubyte"
            path, data = read_checked(folder, name, src)
            parsed[kind] = parse_idx(data, path, images=kind == "images")
        if len(parsed["images"]) != len(parsed["labels"]) or parsed["labels"].max(initial=0) >= len(src.classes):
            raise BenchError(f"{src.name} {split} files in {folder} hold {len(parsed['images'])} images and "
                             f"{len(parsed['labels'])} labels up to {parsed['labels'].max(initial=0)}: they must "
                             f"match one to one, labels below {len(src.classes)}; replace them with the original files")
        out.update({f"{split}_{kind}": values for kind, values in parsed.items()})
    out["folder"] = str(folder)
    return out


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (n, 28, 28) -> float (n, 1, 28, 28) in [0, 1], the pixel range every generator uses;
    uint8 (n, c, 28, 28) keeps its c channels."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))  # np.array: writable
    x = x.to(torch.float32, copy=True).div_(255)
    return x.unsqueeze(1) if x.ndim == 3 else x


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] -> uint8 (n, 28, 28) with one channel (the layout MNIST samples are stored
    in), (n, c, 28, 28) with c > 1."""
    out = images.detach().cpu().clamp(0, 1).mul_(255).round_().to(torch.uint8)  # one float copy, not three
    out = out.reshape(len(out), -1, 28, 28)
    return (out[:, 0] if out.shape[1] == 1 else out).numpy()


# ------------------------------------------------------------------------------ classifier
class LeNet(nn.Module):
    """LeNet-style classifier; ``features`` (the 128-d penultimate layer) is the metric space."""
    version = 1  # bump when the architecture or training recipe changes: invalidates caches

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(128, 10))

    def features(self, x):
        return self.body((x - 0.1307) / 0.3081)

    def forward(self, x):
        return self.head(self.features(x))


def _batches(x, size):
    for i in range(0, len(x), size):
        yield x[i:i + size]


FEATURE_BATCH = 100  # images per forward pass: small batches stay in cache (1.7× faster than 2,000 on a CPU)


@torch.no_grad()
def features_and_probs(model: LeNet, images: torch.Tensor, batch: int = FEATURE_BATCH):
    """Penultimate features (float64) and class probabilities of images in [0, 1]. Channels-last
    layout: the CPU's convolutions run about 1.7× faster in it; features then differ from the
    default layout's by rounding (≤ 8e-6 of values up to 32 on MNIST's test set, no predicted
    class changed, FD between its halves equal to 7 digits; bench perf train measures the pace)."""
    model.eval().to(memory_format=torch.channels_last)
    device = next(model.parameters()).device
    feats, probs = [], []
    for chunk in _batches(images, batch):
        f = model.features(chunk.to(device, torch.float32).reshape(-1, 1, 28, 28)
                           .contiguous(memory_format=torch.channels_last))
        feats.append(f.double().cpu())
        probs.append(torch.softmax(model.head(f), 1).double().cpu())
    return torch.cat(feats), torch.cat(probs)


def accuracy(model: LeNet, images: torch.Tensor, labels: np.ndarray) -> float:
    _, probs = features_and_probs(model, images)
    return float((probs.argmax(1).numpy() == labels).mean())


def train_classifier(data: dict, epochs: int = 3, seed: int = 0, log=None) -> tuple[LeNet, float]:
    torch.manual_seed(seed)
    model = LeNet()
    images, labels = to_float(data["train_images"]), torch.as_tensor(data["train_labels"].astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * ((len(images) + 127) // 128))
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        for idx in _batches(torch.randperm(len(images), generator=gen), 128):
            loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if log:
            log(f"classifier epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}")
    return model, accuracy(model, to_float(data["test_images"]), data["test_labels"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class AutoEncoder(nn.Module):
    """The GMMN+AE autoencoder (Li et al. 2015): 784-1024-32 codes in (0, 1), decoder back to pixels."""
    version = 1
    code_dim = 32

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 32), nn.Sigmoid())
        self.decoder = nn.Sequential(nn.Linear(32, 1024), nn.ReLU(), nn.Linear(1024, 784), nn.Sigmoid(),
                                     nn.Unflatten(1, (1, 28, 28)))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def train_autoencoder(data: dict, epochs: int = 3, seed: int = 0, log=None) -> tuple[AutoEncoder, float]:
    """Pixel-wise binary cross-entropy; returns the model and its test reconstruction error (MSE)."""
    torch.manual_seed(seed)
    model = AutoEncoder()
    images = to_float(data["train_images"])
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        for idx in _batches(torch.randperm(len(images), generator=gen), 256):
            loss = nn.functional.binary_cross_entropy(model(images[idx]), images[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if log:
            log(f"autoencoder epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}")
    with torch.no_grad():
        test = to_float(data["test_images"])
        mse = float(torch.cat([(model(c) - c).square().mean((1, 2, 3)) for c in test.split(2000)]).mean())
    return model.eval(), mse


def load_cached(folder: Path, name: str, model_cls, data_md5: dict = FILES) -> tuple[nn.Module, dict]:
    """A cached model, if its record matches this data (``data_md5``, the data set's checksum
    table) and architecture and the weights match their recorded sha256; raises ValueError (or
    OSError) saying why not otherwise."""
    weights, meta_path = folder / f"{name}.pt", folder / f"{name}.json"
    meta = json.loads(meta_path.read_text())
    if meta.get("version") != model_cls.version or meta.get("data_md5") != data_md5:
        raise ValueError("cached for another architecture version or other data")
    if _sha256(weights) != meta.get("weights_sha256"):
        raise ValueError("weights file does not match its recorded sha256")
    model = model_cls()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval(), meta


def load_cached_classifier(folder: Path, source: str = "mnist") -> tuple[LeNet, dict]:
    src = source_of(source)
    return load_cached(folder, f"{src.cache_prefix}_lenet", LeNet, src.files)


def _cached_or_trained(network: str, model_cls, train, metric: str, data_dir: str | None, source: str):
    """Load ``<source's prefix>_<network>`` from the cache, or train it (once) on ``source`` and
    cache it; a mismatch is retrained."""
    src = source_of(source)
    name = f"{src.cache_prefix}_{network}"  # mnist_lenet, fashion_lenet, ...: one cache per data set
    data = load(data_dir, source=source)
    folder = cache_dir()
    try:
        return load_cached(folder, name, model_cls, src.files)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as err:
        print(f"{name} cache in {folder} unusable ({err}); retraining", file=sys.stderr)
    print(f"training {name} once (cached afterwards in {folder})", file=sys.stderr)
    model, score = train(data, log=lambda m: print(m, file=sys.stderr))
    weights = folder / f"{name}.pt"
    files.atomic_write(weights, lambda f: torch.save(model.state_dict(), f))
    meta = {"version": model_cls.version, "data_md5": src.files, metric: score, "weights_sha256": _sha256(weights)}
    files.write_json(folder / f"{name}.json", meta)  # written last: a half-written cache is never trusted
    return model.eval(), meta


@functools.cache
def classifier(data_dir: str | None = None, source: str = "mnist") -> tuple[LeNet, dict]:
    """The cached classifier of ``source``, trained on first use. The cache records the weights'
    sha256, the data's checksums and the architecture version; anything that does not match is retrained."""
    return _cached_or_trained("lenet", LeNet, train_classifier, "test_accuracy", data_dir, source)


@functools.cache
def autoencoder(data_dir: str | None = None, source: str = "mnist") -> tuple[AutoEncoder, dict]:
    """The cached GMMN+AE autoencoder of ``source``, trained on first use, verified like the classifier."""
    return _cached_or_trained("autoencoder", AutoEncoder, train_autoencoder, "test_mse", data_dir, source)
