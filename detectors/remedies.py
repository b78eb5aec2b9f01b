"""Suggested remedies, each with the paper or report to read (see DESIGN.md, "Remedies")."""

from __future__ import annotations

from .findings import Remedy

__all__ = [
    "DIVERGENCE",
    "NONFINITE",
    "VANISHING",
    "EXPLODING",
    "DISCRIMINATOR_WINS",
    "DISCRIMINATOR_OVERFITTING",
    "MODE_COLLAPSE",
    "DIMENSIONAL_COLLAPSE",
    "OSCILLATION",
    "STALLED",
    "GAN_DIVERGENCE",
    "GAN_NONFINITE",
    "GAN_EXPLODING",
    "for_gan",
]

_ROLLBACK = Remedy(
    "Roll back to the last good checkpoint and skip the data batches around the spike",
    "Chowdhery et al. 2022, PaLM (Sec. 5.1)",
)
_EPS = Remedy(
    "Lower Adam's epsilon (e.g. 1e-8 instead of 1e-6) and check the learning-rate warm-up",
    "OLMo 2 (Team OLMo 2024), 2 OLMo 2 Furious",
)
_ZCLIP = Remedy(
    "Clip gradients adaptively: clip when the gradient norm's EMA z-score exceeds ~2.5",
    "Kumar et al. 2025, ZClip: Adaptive Spike Mitigation for LLM Pre-Training",
)
_NS = Remedy(
    "Use the non-saturating generator loss (maximise log D(G(z)))",
    "Goodfellow et al. 2014, Generative Adversarial Nets",
)
_SMOOTH = Remedy(
    "One-sided label smoothing: train D on real labels 0.9 instead of 1",
    "Salimans et al. 2016, Improved Techniques for Training GANs",
)
_SN = Remedy(
    "Spectral normalisation of the discriminator's layers",
    "Miyato et al. 2018, Spectral Normalization for GANs",
)
_TTUR = Remedy(
    "Two time-scale update rule: separate learning rates for D and G (e.g. D 4e-4, G 1e-4)",
    "Heusel et al. 2017, GANs Trained by a Two Time-Scale Update Rule",
)
_R1 = Remedy(
    "R1 gradient penalty on real data for the discriminator",
    "Mescheder et al. 2018, Which Training Methods for GANs do actually Converge?",
)
_WGANGP = Remedy(
    "Wasserstein loss with gradient penalty, which keeps G's gradients useful when D is strong",
    "Gulrajani et al. 2017, Improved Training of Wasserstein GANs",
)
_AB = Remedy(
    "A perfect discriminator makes the generator's gradients vanish; weaken D or add noise",
    "Arjovsky & Bottou 2017, Towards Principled Methods for Training GANs",
)

NONFINITE = (_ROLLBACK, _EPS, _ZCLIP)
DIVERGENCE = (_ROLLBACK, _EPS, _ZCLIP)
OSCILLATION = (_TTUR, _R1, _SN)
EXPLODING = (_ZCLIP, _ROLLBACK, _EPS)
VANISHING = (
    _NS,
    _AB,
    _WGANGP,
    Remedy(
        "Check each layer's update/weight ratio (healthy is around 1e-3); "
        "revisit initialisation and normalisation",
        "Karpathy, CS231n notes: Neural Networks Part 3",
    ),
)
DISCRIMINATOR_WINS = (_NS, _SMOOTH, _SN, _TTUR, _R1)
MODE_COLLAPSE = (
    Remedy(
        "Minibatch discrimination or feature matching",
        "Salimans et al. 2016, Improved Techniques for Training GANs",
    ),
    Remedy("Unrolled GAN: unroll the discriminator a few steps", "Metz et al. 2017, Unrolled GANs"),
    Remedy("PacGAN: let D judge packs of samples", "Lin et al. 2018, PacGAN"),
    _WGANGP,
    Remedy(
        "Minibatch standard-deviation layer in the discriminator",
        "Karras et al. 2018, Progressive Growing of GANs",
    ),
)
DISCRIMINATOR_OVERFITTING = (
    Remedy(
        "Adaptive discriminator augmentation (ADA): augment every image D sees with a "
        "probability p tuned so that r_t stays near 0.6",
        "Karras et al. 2020, Training Generative Adversarial Networks with Limited Data",
    ),
    Remedy(
        "DiffAugment: the same differentiable augmentations (colour, translation, cutout) on "
        "real and generated samples, for both D and G updates",
        "Zhao et al. 2020, Differentiable Augmentation for Data-Efficient GAN Training",
    ),
    _R1,
)
DIMENSIONAL_COLLAPSE = MODE_COLLAPSE + (
    Remedy(
        "Self-supervised encoders: a variance/covariance (decorrelation) term on the embeddings, "
        "or a projector head and stronger augmentations",
        "Bardes et al. 2022, VICReg; Jing et al. 2022, Understanding Dimensional Collapse in "
        "Contrastive Self-supervised Learning",
    ),
)

_LOGITS = Remedy(
    "Compute the BCE from logits (BCEWithLogitsLoss, no nn.Sigmoid in D): nn.BCELoss clamps "
    "log at -100, and a sigmoid that reaches exactly 0 or 1 in float32 passes no gradient",
    "PyTorch documentation, torch.nn.BCELoss and BCEWithLogitsLoss",
)
STALLED = (
    _LOGITS,
    Remedy(
        "Restart from the last checkpoint before the stall with a lower learning rate for the "
        "network that saturated (usually D), and check its initialisation",
        "Radford et al. 2016, DCGAN (Adam lr 2e-4, beta1 0.5, N(0, 0.02) init)",
    ),
    Remedy(
        "Check that the loss depends on the module's parameters (no detach() in the wrong "
        "place) and that no ReLU layer is dead (LeakyReLU avoids it)",
        "Maas et al. 2013, Rectifier Nonlinearities (leaky ReLU)",
    ),
)
_LOWER_LR = Remedy(
    "Lower the learning rates (GANs: Adam 1e-4 to 2e-4 with beta1 0 or 0.5) and keep an EMA "
    "of G's weights for sampling",
    "Radford et al. 2016, DCGAN; Yazici et al. 2019, The Unusual Effectiveness of Averaging "
    "in GAN Training",
)
_GP = Remedy(
    "A gradient penalty on D (R1 on reals, or WGAN-GP) keeps D's gradients bounded",
    "Mescheder et al. 2018; Gulrajani et al. 2017",
)
#: Remedies for a GAN that spikes, drifts or goes non-finite (the generic ones are written for
#: large-model pre-training: rollback and skipped batches mean little for a GAN).
GAN_DIVERGENCE = (_LOWER_LR, _TTUR, _SN, _GP)
GAN_NONFINITE = (_LOGITS, _LOWER_LR, _GP, _SN)
GAN_EXPLODING = (_SN, _GP, _LOWER_LR)

_GAN_BY_KEY = (
    ("divergence/nonfinite", GAN_NONFINITE),
    ("divergence/", GAN_DIVERGENCE),
    ("exploding_gradients/", GAN_EXPLODING),
)


def for_gan(key: str, current: tuple[Remedy, ...]) -> tuple[Remedy, ...]:
    """The remedies for a finding of ``key`` in a GAN run (``current`` if none are specific)."""
    for prefix, chosen in _GAN_BY_KEY:
        if key.startswith(prefix):
            return chosen
    return current
