"""Minimax GAN (Goodfellow et al. 2014, Algorithm 1), and the discriminator-based methods' shared step."""
import torch
import torch.nn.functional as F

from bench.options import Choice, Integer
from methods.base import Method, register_method, set_requires_grad
from methods.networks import per_seed


@register_method("gan")
class MinimaxGAN(Method):
    """Minimax GAN: D ascends log D(x) + log(1-D(G(z))); G descends log(1-D(G(z))) (saturating).

    Recommended (``--hparams recommended``): the DCGAN recipe (Radford et al. 2016, §4), Adam
    lr 2e-4, β = (0.5, 0.999), batch 128, one D step per G step; Goodfellow et al. trained with
    SGD and momentum, which a GAN on these networks no longer uses.

    Subclasses change the objective by overriding ``discriminator_loss`` / ``generator_loss``
    (scores in, loss out), or ``discriminator_objective`` / ``generator_objective`` when the loss
    needs D itself or the samples (WGAN-GP's penalty, MMD GAN's kernel); ``step`` stays here.
    """
    uses_discriminator = True
    batchable = True  # batched_step below; a subclass whose objective runs under vmap says so itself
    constraints = {"d_steps": Integer(min=1), "pack": Integer(min=1),
                   "updates": Choice("alternating", "simultaneous")}
    recommended = {"lr": 2e-4, "betas": (0.5, 0.999), "batch_size": 128, "d_steps": 1}
    neutral_options = {"pack": 1, "updates": "alternating"}

    def __init__(self, d_steps: int = 1, pack: int = 1, updates: str = "alternating"):
        """d_steps: discriminator steps per generator step (k in Algorithm 1).
        pack: PacGAN (Lin et al. 2018): D judges ``pack`` samples at once, concatenated (all real
        or all generated); G and the batch are unchanged, D sees batch/pack inputs.
        updates: "alternating" (Algorithm 1: D steps, then G against the updated D on fresh draws)
        or "simultaneous": D and G both step from the same weights on one real and one noise batch,
        each gradient taken before either update, as TensorFlow code that runs
        ``sess.run([g_train_op, d_train_op])`` does (GDPP's and the Unrolled GAN notebook's)."""
        if updates == "simultaneous" and d_steps != 1:
            raise ValueError(f"updates=simultaneous takes one D step per G step (d_steps=1); got d_steps={d_steps}")
        self.d_steps, self.pack, self.updates = d_steps, pack, updates

    @property
    def discriminator_inputs(self):
        return self.pack

    def packed(self, x):
        """(n, c, ...) -> (n/pack, pack·c, ...): ``pack`` consecutive samples as one input of D."""
        if self.pack == 1:
            return x
        if len(x) % self.pack:
            raise ValueError(f"pack={self.pack} needs a batch divisible by {self.pack}; got {len(x)} samples")
        return x.reshape(len(x) // self.pack, self.pack * x.shape[1], *x.shape[2:])

    def critic(self, D, x):
        """D's output on a batch of samples (packed)."""
        return D(self.packed(x))

    # Losses from logits l, D = sigmoid(l): log D = -softplus(-l), log(1 - D) = -softplus(l).
    @staticmethod
    def discriminator_loss(real_logits, fake_logits):
        """-[log D(x) + log(1 - D(G(z)))], minimised by D."""
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    @staticmethod
    def generator_loss(fake_logits):
        """log(1 - D(G(z))), minimised by G: its gradient vanishes as D(G(z)) -> 0."""
        return -F.softplus(fake_logits).mean()

    def discriminator_objective(self, D, real, fake):
        """What D minimises on a real and a generated batch (``fake`` carries no graph to G)."""
        return self.discriminator_loss(self.critic(D, real), self.critic(D, fake))

    def generator_objective(self, D, fake, real):
        """What G minimises; ``real()`` draws a data batch for objectives that need one."""
        return self.generator_loss(self.critic(D, fake))

    def after_discriminator_step(self, D):
        """Called after each D update (weight clipping goes here)."""

    def step(self, nets, real):
        if self.updates == "simultaneous":
            return self.simultaneous_step(nets, real)
        G, D = nets.generator, nets.discriminator
        set_requires_grad(D, True)
        for _ in range(self.d_steps):  # k steps of D with G frozen (no graph through G)
            x = real()
            with torch.no_grad():
                fake = G(nets.noise(len(x)))
            d_loss = self.discriminator_objective(D, x, fake)
            nets.d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            nets.d_opt.step()
            self.after_discriminator_step(D)
        set_requires_grad(D, False)  # one step of G with D frozen
        g_loss = self.generator_objective(D, G(nets.noise(len(x))), real)
        nets.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        nets.g_opt.step()
        set_requires_grad(D, True)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    def simultaneous_step(self, nets, real):
        """One D and one G update, both gradients at the current weights, on one batch of each."""
        G, D = nets.generator, nets.discriminator
        x = real()
        fake = G(nets.noise(len(x)))
        set_requires_grad(D, False)  # G's loss passes through D without giving D a gradient
        g_loss = self.generator_objective(D, fake, lambda: x)
        set_requires_grad(D, True)
        d_loss = self.discriminator_objective(D, x, fake.detach())
        nets.d_opt.zero_grad(set_to_none=True)
        nets.g_opt.zero_grad(set_to_none=True)
        (d_loss + g_loss).backward()  # disjoint: d_loss reaches only D, g_loss only G
        nets.d_opt.step()
        self.after_discriminator_step(D)
        nets.g_opt.step()
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    def batched_step(self, nets, real):
        """:meth:`step` for the S seeds of a batched group (``run --batch-seeds``), trained as one
        model: ``nets`` holds :class:`~methods.networks.Stacked` networks and optimisers over their
        stacked weights, ``real()`` and ``nets.noise(n)`` each seed's own draws, stacked, in the
        order ``step`` draws them. Each seed's loss comes from its own networks under vmap; the
        losses are summed, so each seed's weights get exactly their own gradient. D needs no freezing:
        G's loss reads D's weights detached. Returns each loss per seed (``[S]``)."""
        G, D = nets.generator, nets.discriminator
        if self.updates == "simultaneous":
            x = real()

            def generator_side(G, D, z, x):  # G runs once, as in step: its loss and its samples for D
                fake = G(z)
                return self.generator_objective(D, fake, lambda: x), fake.detach()
            g_loss, fake = per_seed(generator_side, G, D.detached(), nets.noise(x.shape[1]), x)
            d_loss = per_seed(self.discriminator_objective, D, x, fake)
            nets.d_opt.zero_grad(set_to_none=True)
            nets.g_opt.zero_grad(set_to_none=True)
            (d_loss.sum() + g_loss.sum()).backward()
            nets.d_opt.step()
            self.after_discriminator_step(D)
            nets.g_opt.step()
            return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}
        for _ in range(self.d_steps):
            x = real()
            with torch.no_grad():
                fake = G(nets.noise(x.shape[1]))
            d_loss = per_seed(self.discriminator_objective, D, x, fake)
            nets.d_opt.zero_grad(set_to_none=True)
            d_loss.sum().backward()
            nets.d_opt.step()
            self.after_discriminator_step(D)
        g_loss = per_seed(lambda G, D, z: self.generator_objective(D, G(z), no_draws_in_vmap), G, D.detached(),
                          nets.noise(x.shape[1]))
        nets.g_opt.zero_grad(set_to_none=True)
        g_loss.sum().backward()
        nets.g_opt.step()
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


def no_draws_in_vmap():
    raise RuntimeError("a batched objective cannot draw data inside vmap: set batchable = False on the method")
