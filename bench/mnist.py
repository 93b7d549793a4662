"""The real MNIST, checked against its published checksums, and the MNIST classifier whose
features measure sample quality (no Inception weights here, and MNIST is not what Inception saw)."""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench import store
from bench.environment import PROJECT_ROOT, cache_dir
from bench.registry import BenchError

# md5 of the uncompressed files (../shared/data/README.md; the same as torchvision's)
FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
ENV_DATA = "BENCH_MNIST_DIR"


def candidate_dirs(explicit: str | Path | None = None) -> list[Path]:
    """Where the four files are looked for, in order. A folder the user names is the only one."""
    if explicit:
        dirs = [Path(explicit)]
    elif os.environ.get(ENV_DATA):
        dirs = [Path(os.environ[ENV_DATA])]
    else:  # beside the project: from where it is run (its root), and from the package's checkout
        roots = list(dict.fromkeys([Path.cwd().resolve(), PROJECT_ROOT]))
        dirs = [r.parent / "shared" / "data" / "mnist" for r in roots] + [r / "data" / "MNIST" / "raw" for r in roots]
        dirs.append(cache_dir() / "MNIST" / "raw")
    return [d / "MNIST" / "raw" if (d / "MNIST" / "raw").is_dir() else d for d in dirs]  # torchvision's root


def _read(folder: Path, name: str) -> bytes | None:
    for path in (folder / name, folder / f"{name}.gz"):
        if path.exists():
            try:
                raw = path.read_bytes()
                return gzip.decompress(raw) if path.suffix == ".gz" else raw
            except (OSError, EOFError, gzip.BadGzipFile) as err:
                raise BenchError(f"MNIST file {path} cannot be read ({err}); delete it and fetch it again") from err
    return None


def _parse_idx(data: bytes, name: str) -> np.ndarray:
    """IDX format: magic (0, 0, dtype 0x08 = uint8, ndim), then ndim big-endian int32 sizes."""
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _download(root: Path) -> None:
    try:
        from torchvision.datasets import MNIST
        MNIST(str(root), train=True, download=True)
        MNIST(str(root), train=False, download=True)
    except Exception as err:  # offline, blocked, partial: say so, never fall back to other data
        raise OSError(f"{type(err).__name__}: {err}") from err


@functools.cache
def load(data_dir: str | None = None, download: bool = True) -> dict[str, np.ndarray]:
    """{train,test}_{images,labels} as uint8 arrays, each file's md5 checked."""
    looked = candidate_dirs(data_dir)
    folder = next((d for d in looked if all(_read_exists(d, n) for n in FILES)), None)
    download = download and not data_dir and not os.environ.get(ENV_DATA)  # a named folder is not replaced
    download_error = ""
    if folder is None and download:
        try:
            _download(cache_dir())
            folder = cache_dir() / "MNIST" / "raw"
        except OSError as err:
            download_error = str(err)
    if folder is None:
        where = "\n  ".join(str(d) for d in looked)
        raise BenchError(
            "MNIST not found. Looked for the four files (" + ", ".join(FILES) + ", optionally .gz) in:\n  "
            + where + f"\nPass --data-dir FOLDER or set {ENV_DATA}; or run on a machine with a network, where "
            "torchvision's downloader fetches them" + (f" (it failed here: {download_error})" if download_error else ""))
    out = {}
    for name, md5 in FILES.items():
        data = _read(folder, name)
        digest = hashlib.md5(data).hexdigest()
        if digest != md5:
            raise BenchError(f"MNIST file {folder / name}[.gz] has md5 {digest}, expected {md5}: it is corrupt "
                             "or not MNIST. Replace it with the original file.")
        key = ("train_" if name.startswith("train") else "test_") + ("images" if "images" in name else "labels")
        out[key] = _parse_idx(data, name)
    out["folder"] = str(folder)
    return out


def _read_exists(folder: Path, name: str) -> bool:
    return (folder / name).exists() or (folder / f"{name}.gz").exists()


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


@torch.no_grad()
def features_and_probs(model: LeNet, images: torch.Tensor, batch: int = 2000):
    """Penultimate features (float64) and class probabilities of images in [0, 1]."""
    model.eval()
    device = next(model.parameters()).device
    feats, probs = [], []
    for chunk in _batches(images, batch):
        f = model.features(chunk.to(device, torch.float32).reshape(-1, 1, 28, 28))
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


def load_cached(folder: Path, name: str, model_cls) -> tuple[nn.Module, dict]:
    """A cached model, if its record matches this data and architecture and the weights match
    their recorded sha256; raises ValueError (or OSError) saying why not otherwise."""
    weights, meta_path = folder / f"{name}.pt", folder / f"{name}.json"
    meta = json.loads(meta_path.read_text())
    if meta.get("version") != model_cls.version or meta.get("data_md5") != FILES:
        raise ValueError("cached for another architecture version or other data")
    if _sha256(weights) != meta.get("weights_sha256"):
        raise ValueError("weights file does not match its recorded sha256")
    model = model_cls()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval(), meta


def load_cached_classifier(folder: Path) -> tuple[LeNet, dict]:
    return load_cached(folder, "mnist_lenet", LeNet)


def _cached_or_trained(name: str, model_cls, train, metric: str, data_dir: str | None):
    """Load ``name`` from the cache, or train it (once) and cache it; a mismatch is retrained."""
    data = load(data_dir)
    folder = cache_dir()
    try:
        return load_cached(folder, name, model_cls)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as err:
        print(f"{name} cache in {folder} unusable ({err}); retraining", file=sys.stderr)
    print(f"training {name} once (cached afterwards in {folder})", file=sys.stderr)
    model, score = train(data, log=lambda m: print(m, file=sys.stderr))
    weights = folder / f"{name}.pt"
    store.atomic_write(weights, lambda f: torch.save(model.state_dict(), f))
    meta = {"version": model_cls.version, "data_md5": FILES, metric: score, "weights_sha256": _sha256(weights)}
    store.write_json(folder / f"{name}.json", meta)  # written last: a half-written cache is never trusted
    return model.eval(), meta


@functools.cache
def classifier(data_dir: str | None = None) -> tuple[LeNet, dict]:
    """The cached classifier, trained on first use. The cache records the weights' sha256, the
    data's checksums and the architecture version; anything that does not match is retrained."""
    return _cached_or_trained("mnist_lenet", LeNet, train_classifier, "test_accuracy", data_dir)


@functools.cache
def autoencoder(data_dir: str | None = None) -> tuple[AutoEncoder, dict]:
    """The cached GMMN+AE autoencoder, trained on first use, verified like the classifier."""
    return _cached_or_trained("mnist_autoencoder", AutoEncoder, train_autoencoder, "test_mse", data_dir)
