"""Least-squares GAN (Mao et al. 2017, "Least Squares Generative Adversarial Networks")."""
from bench.options import Real
from methods.base import register_method
from methods.gan import MinimaxGAN


@register_method("lsgan")
class LeastSquaresGAN(MinimaxGAN):
    """Least-squares GAN: D regresses real to b and fake to a, G pushes fakes to c (a=0, b=c=1).

    Losses (eq. 2 of the paper): D minimises ½E(D(x) − b)² + ½E(D(G(z)) − a)², G minimises
    ½E(D(G(z)) − c)². a = 0, b = c = 1 is the paper's 0-1 coding used in its experiments; a = −1,
    b = 1, c = 0 minimises the Pearson χ² divergence (its §3.2.1).
    Recommended: Adam with β1 = 0.5 as in DCGAN, on which the paper's experiments build (§4),
    lr 2e-4, batch 64, one D step per G step.
    """
    batchable = True  # its losses are pure tensor functions: MinimaxGAN.batched_step trains it
    constraints = {**MinimaxGAN.constraints, "a": Real(), "b": Real(), "c": Real()}
    recommended = {"lr": 2e-4, "betas": (0.5, 0.999), "d_steps": 1, "batch_size": 64}

    def __init__(self, d_steps: int = 1, pack: int = 1, a: float = 0.0, b: float = 1.0, c: float = 1.0,
                 updates: str = "alternating"):
        """a, b: D's targets for generated and real samples; c: what G wants D to say of its samples."""
        if a == b:
            raise ValueError(f"a and b must differ (D's targets for fake and real); got a = b = {a}")
        super().__init__(d_steps, pack, updates)
        self.a, self.b, self.c = a, b, c

    # D's output is used as is (no sigmoid): a regression onto the targets.
    def discriminator_loss(self, real_scores, fake_scores):
        return 0.5 * ((real_scores - self.b) ** 2).mean() + 0.5 * ((fake_scores - self.a) ** 2).mean()

    def generator_loss(self, fake_scores):
        return 0.5 * ((fake_scores - self.c) ** 2).mean()
