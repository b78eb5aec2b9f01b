"""Which series plays which role, from the names users already give them.

GAN code in the wild names the same things many ways (``loss_D``, ``errD``, ``d_loss``,
``loss/D``, ``lossD`` ...). Names are normalised (lower case, every character other than a letter
or a digit removed) and compared with known spellings; any other name containing ``loss`` is a
generic loss. Gradient norms follow the collector's convention ``grad_norm/<module>/<param>``.
An explicit mapping in the suite's config always wins over matching.
"""

from __future__ import annotations

import re

__all__ = [
    "ROLE_NAMES",
    "ROLE_PATTERNS",
    "normalise",
    "match_role",
    "role_priority",
    "is_loss",
    "parse_grad_norm",
    "GRAD_PREFIX",
    "SIGNAL_PREFIX",
]

GRAD_PREFIX = "grad_norm/"
SIGNAL_PREFIX = "stethoscope/"

#: Roles and what they mean.
ROLE_NAMES = {
    "loss_d": "discriminator loss",
    "loss_g": "generator loss",
    "d_real": "D(x), the discriminator's mean output on real samples",
    "d_fake": "D(G(z)), the discriminator's mean output on generated samples",
    "d_real_sign": "r_t = E[sign(D(x_real))], the mean sign of D's logits on real samples "
                   "(StyleGAN2-ADA's overfitting heuristic, in [-1, 1])",
}

#: Normalised spellings per role, most preferred first.
ROLE_PATTERNS: dict[str, tuple[str, ...]] = {
    "loss_d": (
        "lossd", "errd", "dloss", "discloss", "lossdisc", "discriminatorloss",
        "lossdiscriminator", "lossdis", "disloss", "dcost", "costd", "errdisc",
        "trainlossd", "trainerrd", "lossdtotal",
    ),
    "loss_g": (
        "lossg", "errg", "gloss", "genloss", "lossgen", "generatorloss", "lossgenerator",
        "gcost", "costg", "errgen", "trainlossg", "trainerrg", "lossgtotal",
    ),
    "d_real": (
        "dx", "dreal", "dxmean", "drealmean", "realscore", "scorereal", "doutreal", "dofx",
        "dxreal", "predreal", "realpred", "dprobreal", "realprob",
    ),
    "d_fake": (
        "dgz1", "dgz", "dfake", "dgzmean", "dfakemean", "fakescore", "scorefake", "doutfake",
        "dofgz", "predfake", "fakepred", "dprobfake", "fakeprob", "dgz2",
    ),
    # StyleGAN2-ADA reports it as "Loss/signs/real"; the paper calls it r_t
    "d_real_sign": (
        "rt", "adart", "drealsign", "realsign", "signreal", "dxsign", "signdx",
        "losssignsreal", "signsreal", "drealsignmean", "realsignmean", "overfittingrt",
    ),
}

_NON_ALNUM = re.compile(r"[^a-z0-9]")


def normalise(name: str) -> str:
    """Lower-case ``name`` and drop every character that is not a letter or a digit.

    >>> normalise("loss/D"), normalise("D_G_z1")
    ('lossd', 'dgz1')
    """
    return _NON_ALNUM.sub("", name.lower())


def match_role(name: str) -> str | None:
    """The role a series name matches, or None.

    >>> [match_role(n) for n in ("errD", "g_loss", "D_x", "D_G_z1", "d_fake", "loss")]
    ['loss_d', 'loss_g', 'd_real', 'd_fake', 'd_fake', None]
    >>> [match_role(n) for n in ("r_t", "D_real_sign", "Loss/signs/real", "Loss/scores/real")]
    ['d_real_sign', 'd_real_sign', 'd_real_sign', None]
    """
    if name.startswith((GRAD_PREFIX, SIGNAL_PREFIX)):
        return None
    key = normalise(name)
    for role, patterns in ROLE_PATTERNS.items():
        if key in patterns:
            return role
    return None


def role_priority(role: str, name: str) -> int:
    """Rank of ``name`` among the spellings of ``role`` (lower is preferred)."""
    patterns = ROLE_PATTERNS[role]
    key = normalise(name)
    return patterns.index(key) if key in patterns else len(patterns)


def is_loss(name: str) -> bool:
    """True for names that look like a loss: a GAN loss role, or any name containing "loss".

    >>> is_loss("val/loss"), is_loss("errG"), is_loss("grad_norm/G/total"), is_loss("D_x")
    (True, True, False, False)
    """
    if name.startswith((GRAD_PREFIX, SIGNAL_PREFIX)):
        return False
    role = match_role(name)
    if role is not None:  # "Loss/signs/real" is StyleGAN2-ADA's r_t, not a loss
        return role in ("loss_d", "loss_g")
    return "loss" in name.lower()


def parse_grad_norm(name: str) -> tuple[str, str] | None:
    """Split ``grad_norm/<module>/<param>`` into ``(module, param)``; None for other names.

    >>> parse_grad_norm("grad_norm/G/main.0.weight"), parse_grad_norm("loss_G")
    (('G', 'main.0.weight'), None)
    """
    if not name.startswith(GRAD_PREFIX):
        return None
    rest = name[len(GRAD_PREFIX):]
    module, sep, param = rest.partition("/")
    if not sep or not module or not param:
        return None
    return module, param
