import pytest
import torch

from bench import environment, mnist, records
from bench.errors import BenchError


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def _hermetic_cache(tmp_path_factory):
    """Every test session caches the MNIST classifier and autoencoder in a fresh folder of its own
    (BENCH_CACHE_DIR), never in ~/.cache/bench: they are trained once per session, and the
    memoised loaders are cleared around it so that no model from another folder is reused."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(environment.ENV_CACHE, str(tmp_path_factory.mktemp("bench_cache")))
        mnist.classifier.cache_clear()
        mnist.autoencoder.cache_clear()
        yield
        mnist.classifier.cache_clear()
        mnist.autoencoder.cache_clear()


@pytest.fixture(scope="session")
def data():
    """The local MNIST files ($BENCH_MNIST_DIR, ../shared/data/mnist, ...); the tests skip, saying
    where they looked, when there are none: they never start the downloader."""
    try:
        return mnist.load(download=False)
    except BenchError as err:
        if not str(err).startswith("MNIST not found"):
            raise  # present but corrupt is a failure, not a skip
        looked = ", ".join(str(d) for d in mnist.candidate_dirs())
        pytest.skip(f"no local MNIST files (looked in {looked}); set {mnist.ENV_DATA} to a folder holding "
                    "the four files: the tests never download them")


def direct_mmd2(x, y, kernel, bandwidths, estimator, a=None, b=None):
    """The O(N²) definition, written independently of bench.mmd: explicit pairwise differences."""
    def k(p, q):
        d2 = ((p[:, None, :] - q[None, :, :]) ** 2).sum(-1)
        if kernel == "gaussian":
            return sum(torch.exp(-d2 / (2 * s ** 2)) for s in bandwidths)
        if p is q:  # the diagonal is the constant k(0): keep sqrt(0) out of the gradient
            eye = torch.eye(len(p), dtype=torch.bool)
            d = torch.where(eye, 0.0, torch.where(eye, 1.0, d2).sqrt())
        else:
            d = d2.sqrt()
        if kernel == "laplacian":
            return sum(torch.exp(-d / s) for s in bandwidths)
        return -d
    n, m = len(x), len(y)
    a = torch.full((n,), 1 / n, dtype=x.dtype) if a is None else a / a.sum()
    b = torch.full((m,), 1 / m, dtype=x.dtype) if b is None else b / b.sum()
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    if estimator == "biased":
        return a @ kxx @ a + b @ kyy @ b - 2 * a @ kxy @ b
    wxx, wyy = torch.outer(a, a), torch.outer(b, b)
    wxx.fill_diagonal_(0)
    wyy.fill_diagonal_(0)
    return (wxx * kxx).sum() / wxx.sum() + (wyy * kyy).sum() / wyy.sum() - 2 * a @ kxy @ b


class Exploding:
    """A test method whose generator and loss become NaN from its ``calls_before_nan + 1``-th step."""
    calls_before_nan = 5

    def __init__(self):
        self.calls = 0

    def step(self, nets, real):
        self.calls += 1
        if self.calls > self.calls_before_nan:
            with torch.no_grad():
                for p in nets.generator.parameters():
                    p.fill_(float("nan"))
        return {"loss": torch.tensor(float("nan") if self.calls > self.calls_before_nan else 1.0)}


def write_record(out, method, dataset, seed, final, *, profile="quick", method_options=None, status="ok",
                 label=None, steps=3000, revision="0123456789abcdef0123456789abcdef01234567", history=()):
    """A run record as the harness writes it, with the given final metrics and no samples, stored
    under ``out`` without training (its spec resolved as for a real run; a ``reference`` record
    keeps ``method`` as its name, which no registry checks)."""
    from bench import spec as specs
    from bench import store
    if status == "reference":
        spec = specs.resolve("gmn", dataset, seed, steps=steps).to_dict()
        spec.update(method=method, profile=profile)
        ids = {"run_id": f"reference-{len(method)}-{seed}", "variant_id": f"reference-{len(method)}",
               "variant": method}
        folder = out / "runs" / dataset / "reference" / ids["run_id"]
    else:
        resolved = specs.resolve(method, dataset, seed, profile, method_options=method_options, label=label, steps=steps)
        spec, run_id = resolved.to_dict(), resolved.run_id
        ids = {"run_id": run_id, "variant_id": resolved.variant_id, "variant": resolved.variant}
        folder = out / "runs" / dataset / method / f"seed{seed}-{run_id}"
    record = {"schema": records.SCHEMA, **ids, "status": status, "diverged_at_step": None, "steps_done": steps,
              "spec": spec, "identity": {"spec_version": specs.SPEC_VERSION}, "final": final, "history": list(history),
              "environment": {"versions": {"python": "3.11.7", "torch": "2.14.1"}, "device": "cpu",
                              "device_name": "cpu: x86_64, 1 threads", "git_revision": revision}}
    return store.write_run(folder, None, record)


@pytest.fixture
def registries(monkeypatch):
    """The registries as they are, restored after the test (plugins registered here vanish)."""
    from bench import plugins
    for registry in plugins.REGISTRIES:
        registry.names()
        for attr in ("_entries", "_sources", "_problems"):
            monkeypatch.setattr(registry, attr, dict(getattr(registry, attr)))
    monkeypatch.setattr(plugins, "_LOADED", {})
