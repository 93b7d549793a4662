"""``python -m bench theory``: the GAN theorems checked with numbers on 1-D Gaussians.

1. Optimal discriminator: for a fixed G of known density p_g, D trained alone approaches
   D*(x) = p_data / (p_data + p_g), and V(D*, G) = 2·JSD(p_data ‖ p_g) − log 4.
2. Equilibrium: after training, the GANs' (V(D,G) + log 4)/2 estimates the JSD, D ≈ 1/2, and the
   generated density approaches p_data.
3. Saturation: as D learns to reject fakes, the minimax generator gradient vanishes while the
   non-saturating one does not.

Everything runs through the registered methods (their losses and steps), the shared networks
and, for training, the harness itself.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from scipy.stats import gaussian_kde

from bench import figures, files
from bench.datasets import DATASETS
from bench.harness import train_and_evaluate
from bench.spec import resolve
from methods import METHODS
from methods.base import Nets
from methods.networks import mlp_discriminator, mlp_generator, noise_sampler

LOG4 = math.log(4.0)


# ---------------------------------------------------------------------- closed-form pieces
def gaussian_density(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """N(mean, std²) at the points x (1-D): the closed form gauss1d already has."""
    return DATASETS.create("gauss1d", mean=mean, std=std).density(x[:, None])


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data / (p_data + p_g); 1/2 where neither density has mass (D* is free there)."""
    total = p_data + p_g
    return torch.where(total > 0, p_data / torch.where(total > 0, total, 1.0), 0.5)


def jsd(p: torch.Tensor, q: torch.Tensor, dx: float) -> float:
    """Jensen–Shannon divergence (nats) of two densities sampled on a uniform grid of step dx."""
    m = (p + q) / 2

    def kl(a):
        nz = a > 0
        return float((a[nz] * torch.log(a[nz] / m[nz])).sum() * dx)
    return 0.5 * kl(p) + 0.5 * kl(q)


def value_function(d: torch.Tensor, p_data: torch.Tensor, p_g: torch.Tensor, dx: float) -> float:
    """V(D, G) = ∫ p_data log D + p_g log(1 − D), on a grid."""
    d = d.to(torch.float64).clamp(1e-12, 1 - 1e-12)
    return float(((p_data * d.log() + p_g * (1 - d).log()).sum()) * dx)


class AffineGenerator(torch.nn.Module):
    """G(z) = scale·z + shift with z ~ N(0, 1): its output density N(shift, scale²) is known."""

    def __init__(self, shift: float, scale: float):
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)
        with torch.no_grad():
            self.linear.weight.fill_(scale)
            self.linear.bias.fill_(shift)

    def forward(self, z):
        return self.linear(z)


def _frozen_g_nets(generator, seed, lr=1e-3, width=128, depth=3, noise_dim=1):
    """Nets whose generator optimiser has lr 0: the method's own step then trains D alone."""
    torch.manual_seed(seed)
    disc = mlp_discriminator(1, width, depth)
    return Nets(generator=generator, g_opt=torch.optim.SGD(generator.parameters(), lr=0.0),
                noise=noise_sampler("gaussian", noise_dim, torch.Generator().manual_seed(seed + 1), "cpu"),
                discriminator=disc, d_opt=torch.optim.Adam(disc.parameters(), lr, betas=(0.5, 0.999)))


def _mean_d_of_fakes(nets, n=4096) -> float:
    with torch.no_grad():
        return float(torch.sigmoid(nets.discriminator(nets.generator(nets.noise(n)))).mean())


def _d_prob(disc, x):
    with torch.no_grad():
        return torch.sigmoid(disc(x.to(torch.float32))).squeeze(1).to(torch.float64)


# ------------------------------------------------------------ 1. the optimal discriminator
def optimal_discriminator_experiment(steps=3000, batch=512, seed=0, g_shift=0.0, g_scale=1.0):
    data = DATASETS.create("gauss1d")
    mean, std = float(data.means[0, 0]), data.std
    nets = _frozen_g_nets(AffineGenerator(g_shift, g_scale), seed)
    gan = METHODS.create("gan")
    stream = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        gan.step(nets, lambda: data.sample(batch, stream))
    lo, hi = min(mean - 5 * std, g_shift - 5 * g_scale), max(mean + 5 * std, g_shift + 5 * g_scale)
    x = torch.linspace(lo, hi, 4001, dtype=torch.float64)[:, None]
    dx = float(x[1, 0] - x[0, 0])
    p_data, p_g = data.density(x), gaussian_density(x[:, 0], g_shift, g_scale)
    d_star, d = optimal_discriminator(p_data, p_g), _d_prob(nets.discriminator, x)
    mixture = (p_data + p_g) / 2
    where = mixture > 1e-3 * mixture.max()  # where the data constrain D
    gap = (d - d_star).abs()
    table = pd.DataFrame([{
        "steps": steps, "p_data": f"N({mean:g}, {std:g}²)", "p_g": f"N({g_shift:g}, {g_scale:g}²)",
        "max |D − D*|": float(gap[where].max()),
        "mean |D − D*| (under (p_data+p_g)/2)": float((gap * mixture).sum() * dx),
        "V(D, G)": value_function(d, p_data, p_g, dx),
        "V(D*, G) = 2·JSD − log 4": 2 * jsd(p_data, p_g, dx) - LOG4,
        "JSD": jsd(p_data, p_g, dx),
    }])
    curves = pd.DataFrame({"x": x[:, 0].numpy(), "D (trained)": d.numpy(), "D*": d_star.numpy(),
                           "p_data": p_data.numpy(), "p_g": p_g.numpy()})
    return table, curves


# ------------------------------------------------------------------------ 2. equilibrium
def equilibrium_experiment(datasets=("gauss1d", "mix1d"), methods=("gmn", "gan", "nsgan"), steps=3000,
                           seed=0, snapshots=4, progress=False):
    rows, densities = [], []
    for name in datasets:
        data = DATASETS.create(name)
        grid = torch.linspace(float(data.means.min()) - 3, float(data.means.max()) + 3, 2001,
                              dtype=torch.float64)[:, None]
        dx = float(grid[1, 0] - grid[0, 0])
        p_data = data.density(grid)
        for method in methods:
            seen = {}

            def observe(step, nets, samples):
                seen[step] = (nets, samples[:, 0].double().cpu().numpy())
            spec = resolve(method, name, seed, steps=steps, eval_points=snapshots, device="cpu", noise_dim=1)
            record, _ = train_and_evaluate(spec, progress=progress, observer=observe)
            for step, (_, s) in seen.items():
                kde = torch.from_numpy(gaussian_kde(s)(grid[:, 0].numpy()))
                densities += [{"dataset": name, "method": method, "step": step, "x": float(xv), "density": float(pv)}
                              for xv, pv in zip(grid[::10, 0], kde[::10])]
            nets, final = seen[max(seen)]
            p_g = torch.from_numpy(gaussian_kde(final)(grid[:, 0].numpy()))
            row = {"dataset": name, "method": method, "status": record["status"],
                   "JSD(p_data, KDE of samples)": jsd(p_data, p_g, dx),
                   "modes": record["final"].get("modes_covered"), "HQ %": record["final"].get("high_quality_pct")}
            if nets.discriminator is not None:
                real = data.sample(10_000, torch.Generator().manual_seed(seed + 7))
                with torch.no_grad():
                    fake = nets.generator(nets.noise(10_000))
                d_real, d_fake = _d_prob(nets.discriminator, real), _d_prob(nets.discriminator, fake)
                v = float(d_real.clamp_min(1e-12).log().mean() + (1 - d_fake).clamp_min(1e-12).log().mean())
                row.update({"V(D,G)": v, "JSD est. (V + log 4)/2": (v + LOG4) / 2,
                            "mean |D − ½|": float(torch.cat([d_real, d_fake]).sub(0.5).abs().mean())})
            rows.append(row)
    return pd.DataFrame(rows), pd.DataFrame(densities)


# -------------------------------------------------------------------------- 3. saturation
def _generator_grad_norm(method_name, nets, n=1024):
    loss_fn = METHODS.get(method_name).generator_loss
    params = [p for p in nets.generator.parameters()]
    fake_logits = nets.discriminator(nets.generator(nets.noise(n)))
    grads = torch.autograd.grad(loss_fn(fake_logits), params)
    return float(torch.sqrt(sum((g ** 2).sum() for g in grads)))


def saturation_experiment(d_steps=600, every=50, train_steps=300, seed=0, data_mean=5.0, progress=False):
    """(a) G fixed at initialisation, D trained to reject it: both generator-gradient norms
    against mean D(G(z)). (b) The first steps of real training of gan and nsgan, the data far
    from where G starts (N(data_mean, 0.5²), G near 0), so that D wins early as in the paper."""
    data_options = {"mean": data_mean}
    data = DATASETS.create("gauss1d", **data_options)
    torch.manual_seed(seed)
    generator = mlp_generator(1, 1, 128, 3)  # the shared generator, at initialisation (outputs near 0)
    nets = _frozen_g_nets(generator, seed)
    gan, stream, rows = METHODS.create("gan"), torch.Generator().manual_seed(seed), []
    for step in range(d_steps + 1):
        if step % every == 0:
            rows.append({"D steps": step, "mean D(G(z))": _mean_d_of_fakes(nets),
                         "‖∇G‖ minimax (gan)": _generator_grad_norm("gan", nets),
                         "‖∇G‖ non-saturating (nsgan)": _generator_grad_norm("nsgan", nets)})
        gan.step(nets, lambda: data.sample(512, stream))
    fixed = pd.DataFrame(rows)

    training = {}
    for method in ("gan", "nsgan"):
        def observe(step, nets_, samples, method=method):
            training.setdefault(step, {"step": step}).update({
                f"{method}: mean D(G(z))": _mean_d_of_fakes(nets_), f"{method}: ‖∇G‖": _generator_grad_norm(method, nets_),
                f"{method}: mean G(z)": float(samples.mean())})
        train_and_evaluate(resolve(method, "gauss1d", seed, steps=train_steps, eval_points=max(1, train_steps // 25),
                                   device="cpu", noise_dim=1, dataset_options=data_options),
                           progress=progress, observer=observe)
    return fixed, pd.DataFrame(list(training.values()))


# ------------------------------------------------------------------------------ figures
def _plot_optimal(curves: pd.DataFrame, path: Path):
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(curves["x"], curves["D*"], label="D* = p_data/(p_data+p_g)", lw=2.5, c="k")
    ax.plot(curves["x"], curves["D (trained)"], label="D trained alone", lw=1.5, c="C3", ls="--")
    ax2 = ax.twinx()
    ax2.fill_between(curves["x"], curves["p_data"], alpha=0.2, color="C0", label="p_data")
    ax2.fill_between(curves["x"], curves["p_g"], alpha=0.2, color="C1", label="p_g")
    ax2.set_ylabel("density")
    ax.set_xlabel("x")
    ax.set_ylabel("D(x)")
    ax.set_ylim(-0.02, 1.02)
    fig.legend(loc="upper left", bbox_to_anchor=(0.08, 0.95), fontsize=8)
    fig.tight_layout()
    figures.save_figure(fig, path, 110)


def _plot_equilibrium(densities: pd.DataFrame, datasets, path: Path):
    methods = list(dict.fromkeys(densities["method"]))
    fig, axes = plt.subplots(len(datasets), len(methods), figsize=(3.6 * len(methods), 3 * len(datasets)),
                             squeeze=False)
    for i, name in enumerate(datasets):
        data = DATASETS.create(name)
        for j, method in enumerate(methods):
            ax = axes[i, j]
            sub = densities[(densities["dataset"] == name) & (densities["method"] == method)]
            steps = sorted(sub["step"].unique())
            palette = sns.color_palette("viridis", len(steps))
            for color, step in zip(palette, steps):
                s = sub[sub["step"] == step]
                ax.plot(s["x"], s["density"], c=color, lw=1.2, label=f"step {step}")
            x = torch.tensor(sorted(sub["x"].unique()), dtype=torch.float64)[:, None]
            p_data = data.density(x)
            ax.plot(x[:, 0], p_data, c="k", lw=2, ls="--", label="p_data")
            ax.set_ylim(0, 2.5 * float(p_data.max()))  # the step-0 spike would flatten everything else
            ax.set_title(f"{method} on {name}", fontsize=9)
            ax.legend(fontsize=6)
    fig.tight_layout()
    figures.save_figure(fig, path, 100)


def _plot_saturation(fixed: pd.DataFrame, training: pd.DataFrame, data_mean: float, path: Path):
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.loglog(fixed["mean D(G(z))"], fixed["‖∇G‖ minimax (gan)"], "o-", label="minimax: log(1 − D(G(z)))")
    a.loglog(fixed["mean D(G(z))"], fixed["‖∇G‖ non-saturating (nsgan)"], "s-", label="non-saturating: −log D(G(z))")
    a.invert_xaxis()
    a.set_xlabel("mean D(G(z))  (D learning to reject fakes →)")
    a.set_ylabel("‖∇_θG loss‖")
    a.set_title("G fixed at initialisation, D trained", fontsize=9)
    a.legend(fontsize=8)
    for method in ("gan", "nsgan"):
        b.plot(training["step"], training[f"{method}: mean G(z)"], "o-", ms=3, label=f"{method}: mean G(z)")
    b.axhline(data_mean, c="k", ls="--", lw=1, label="data mean")
    b.set_xlabel("training step")
    b.set_ylabel("mean of generated samples")
    b.set_title("first steps of training: does G move towards the data?", fontsize=9)
    b.legend(fontsize=8)
    fig.tight_layout()
    figures.save_figure(fig, path, 110)


def run_all(out: Path, quick: bool = False, progress: bool = True, print_fn=print) -> dict[str, pd.DataFrame]:
    """Run the three experiments; write a CSV, a Markdown table and a figure for each."""
    out = Path(out)
    scale = 0.2 if quick else 1.0
    optimal, curves = optimal_discriminator_experiment(steps=int(3000 * scale))
    datasets = ("gauss1d", "mix1d")
    equilibrium, densities = equilibrium_experiment(datasets, steps=int(3000 * scale), progress=progress)
    fixed, training = saturation_experiment(d_steps=int(600 * scale), train_steps=int(300 * scale),
                                            progress=progress)
    _plot_optimal(curves, out / "optimal_discriminator.png")
    _plot_equilibrium(densities, datasets, out / "equilibrium.png")
    _plot_saturation(fixed, training, 5.0, out / "saturation.png")
    tables = {"optimal_discriminator": optimal, "equilibrium": equilibrium, "saturation": fixed,
              "saturation_training": training}
    for name, table in tables.items():
        files.atomic_write(out / f"{name}.csv", lambda f, t=table: f.write(t.to_csv(index=False).encode()))
        files.atomic_write(out / f"{name}.md", lambda f, t=table: f.write(t.to_markdown(index=False).encode()))
        print_fn(f"\n{name}\n{table.to_string(index=False, float_format=lambda v: f'{v:.4g}')}")
    print_fn(f"\nfigures and tables: {out}/")
    return tables
