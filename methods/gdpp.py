"""GDPP: the non-saturating GAN with a determinantal point process diversity term (Elfeki et al. 2019)."""
import torch
import torch.nn.functional as F
from torch import nn

from bench.options import Real
from methods.base import register_method
from methods.gan import MinimaxGAN


class _SymmetricEig(torch.autograd.Function):
    """``torch.linalg.eigh`` with TensorFlow's gradient (``SelfAdjointEigV2``), as GDPP's code has it:
    the reciprocal eigenvalue gaps ``1/(λ_j − λ_i)`` are taken as ``x/(x² + 1e-20)``, so coinciding
    eigenvalues (a batch of 512 in a 128-d feature space has 384 zeros) give 0, not inf or NaN."""

    @staticmethod
    def forward(ctx, a):
        values, vectors = torch.linalg.eigh(a)
        ctx.save_for_backward(values, vectors)
        return values, vectors

    @staticmethod
    def backward(ctx, grad_values, grad_vectors):
        values, vectors = ctx.saved_tensors
        gap = values[None, :] - values[:, None]
        safe = gap / (gap * gap + 1e-20)
        safe.fill_diagonal_(0)
        inner = torch.diag(grad_values) + safe * (vectors.T @ grad_vectors)
        grad = vectors @ inner @ vectors.T
        return 0.5 * (grad + grad.T)  # a symmetric input: its two triangles share the gradient


def dpp_kernel_eigen(features: torch.Tensor):
    """Eigenvalues (ascending) and eigenvectors (columns) of the DPP kernel L = φ̂ φ̂ᵀ of a batch,
    φ̂ the rows of ``features`` scaled to unit length (GDPP's ``compute_diversity``)."""
    unit = F.normalize(features, dim=1)
    return _SymmetricEig.apply(unit @ unit.T)


def gdpp_terms(fake_features: torch.Tensor, real_features: torch.Tensor, eigenvalue_weight: float = 1e-4):
    """GDPP's two terms (the code's ``compute_diversity_loss``), eigenpairs matched by rank:
    magnitude ``w · mean_i (λ_i^real − λ_i^fake)²`` and structure ``−Σ_i λ̂_i^real ⟨v_i^fake, v_i^real⟩``,
    λ̂ the real eigenvalues scaled to [0, 1] by their min and max. Eigenvector signs are left as
    the solver returns them, as in the code."""
    fake_values, fake_vectors = dpp_kernel_eigen(fake_features)
    real_values, real_vectors = dpp_kernel_eigen(real_features)
    magnitude = eigenvalue_weight * F.mse_loss(fake_values, real_values)
    scaled = (real_values - real_values.min()) / (real_values.max() - real_values.min())
    structure = -(scaled * (fake_vectors * real_vectors).sum(0)).sum()
    return magnitude, structure


def _split_head(discriminator: nn.Module) -> tuple[nn.Module, nn.Module]:
    """D as (its layers up to the last hidden one, its final linear layer): GDPP's features are
    the last hidden layer's output."""
    layers, stack = [], [discriminator]
    while stack:
        module = stack.pop(0)
        if isinstance(module, nn.Sequential):
            stack[0:0] = list(module)
        else:
            layers.append(module)
    if not layers or not isinstance(layers[-1], nn.Linear):
        raise ValueError("gdpp needs a discriminator that is a sequence of layers ending in a linear one "
                         "(the MLP networks: --arch mlp, veegan-mlp, pacgan-mlp, gdpp-mlp)")
    return nn.Sequential(*layers[:-1]), layers[-1]


@register_method("gdpp")
class GDPP(MinimaxGAN):
    """GDPP: nsgan whose G also matches the eigenvalues and eigenvectors of the DPP kernel of D's features.

    Source: Elfeki, Couprie, Riviere & Elhoseiny 2019 (ICML), and its code, M-Elfeki/GDPP
    ``gdppgan_Synthetic.py`` (``compute_diversity_loss``, the generator's loss): φ is D's last hidden
    layer, L = φ̂φ̂ᵀ over the batch, eigenpairs of the real and the generated batch matched by rank;
    G descends ½ (−log D(G(z)) + magnitude + structure) (``gen_loss = 0.5 * (gen_loss +
    diversity_loss)``), D its usual loss. The real features are targets (no gradient reaches D).

    Where bench differs: by default bench alternates a D step and a G step, each on its own draws,
    where the code updates both at once on one batch; ``--set gdpp.updates=simultaneous`` trains as
    the code does (both gradients at the same weights, one real and one noise batch).
    """
    batchable = False  # its eigendecomposition Function has no vmap rule; G's loss draws data
    constraints = {**MinimaxGAN.constraints, "eigenvalue_weight": Real(min=0)}

    def __init__(self, d_steps: int = 1, pack: int = 1, eigenvalue_weight: float = 1e-4,
                 updates: str = "alternating"):
        """eigenvalue_weight: the weight of the eigenvalue (magnitude) term (the code's 1e-4)."""
        super().__init__(d_steps, pack, updates)
        self.eigenvalue_weight = eigenvalue_weight

    @staticmethod
    def generator_loss(fake_logits):
        """-log D(G(z)), the non-saturating loss (nsgan's; the code's sigmoid cross-entropy with real labels)."""
        return F.softplus(-fake_logits).mean()

    def generator_objective(self, D, fake, real):
        features, head = _split_head(D)
        fake_features = features(self.packed(fake))
        with torch.no_grad():
            real_features = features(self.packed(real()))
        magnitude, structure = gdpp_terms(fake_features, real_features, self.eigenvalue_weight)
        return 0.5 * (self.generator_loss(head(fake_features)) + magnitude + structure)
