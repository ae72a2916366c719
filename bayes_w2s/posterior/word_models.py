"""Generative models of weak *word* hypotheses, as plain Pyro functions.

The weak generators' outputs for one item are aligned into a confusion network
(:mod:`bayes_w2s.align.confusion_network`); every slot ``s`` of every item becomes one
row of a flat table: its ``K_s`` candidate words (ε, the empty word, included when some
model has none there) and ``choice[s, m]``, the candidate weak model ``m`` put there.

Layout, as for the classification models: plate ``"weak_models"`` (dim −1, size M) holds
the reliabilities; plate ``"slots"`` (dim −2, size S, subsampled for large S) holds the
true word ``w_s``, a discrete site enumerated in parallel; observation ``"y"`` sits in
``slots × weak_models``. Candidates are padded to a common width with impossible
entries, and a slot with a single candidate gets one phantom "other word" so that a
unanimous slot still says something about reliability (K_s ≥ 2 below).
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch


def _candidate_mask(n_candidates: torch.Tensor, width: int) -> torch.Tensor:
    """``[S, 1, width]``: which padded candidate positions exist (phantom included)."""
    k = torch.arange(width)
    return (k < n_candidates.clamp_min(2).unsqueeze(-1)).unsqueeze(-2)


def word_choice_logits(w: torch.Tensor, log_r: torch.Tensor, log_not_r: torch.Tensor,
                       n_candidates: torch.Tensor, width: int) -> torch.Tensor:
    """``[..., S, M, width]`` log p(y = k | w): ``log r`` at ``k = w``, ``log((1−r)/(K_s−1))``
    elsewhere among the slot's candidates, −∞ beyond them. Rows are normalised by
    construction, so a ``Categorical`` on them is the model's likelihood exactly."""
    k = torch.arange(width)
    same = k == w.unsqueeze(-1)                                               # [..., S, 1, width]
    spread = log_not_r - (n_candidates.clamp_min(2) - 1).to(log_r.dtype).log().unsqueeze(-1)   # [..., S, M]
    logits = torch.where(same, log_r.unsqueeze(-1), spread.unsqueeze(-1))
    return logits.masked_fill(~_candidate_mask(n_candidates, width), float("-inf"))


def _true_word_prior(n_candidates: torch.Tensor, width: int, dtype) -> torch.Tensor:
    """``[S, 1, width]`` uniform logits over the slot's real candidates (never the phantom)."""
    real = (torch.arange(width) < n_candidates.unsqueeze(-1)).unsqueeze(-2)
    return torch.zeros(real.shape, dtype=dtype).masked_fill(~real, float("-inf"))


def _observe_slots(choice, n_candidates, weak_models, log_reliability, dtype, subsample_size):
    """Shared tail: w_s ~ Uniform over the slot's candidates; y_s,m | w_s as in the models.
    ``log_reliability(idx)`` gives ``(log r, log(1 − r))`` for the (subsampled) slots."""
    width = max(int(n_candidates.max()), 2)
    with pyro.plate("slots", choice.shape[0], dim=-2, subsample_size=subsample_size) as idx:
        k_s = n_candidates[idx]
        w = pyro.sample("w", dist.Categorical(logits=_true_word_prior(k_s, width, dtype)),
                        infer={"enumerate": "parallel"})
        with weak_models:
            logits = word_choice_logits(w, *log_reliability(idx), k_s, width)
            pyro.sample("y", dist.Categorical(logits=logits), obs=choice[idx])
    return w


def word_reliability(choice: torch.Tensor, n_candidates: torch.Tensor, reliability_a: float = 4.0,
                     reliability_b: float = 2.0, subsample_size: int | None = None):
    r"""ROVER with learnt reliabilities: one probability per weak model of putting the
    true word in a slot.

    .. math::
        r_m &\sim \mathrm{Beta}(a, b) \\
        w_s &\sim \mathrm{Uniform}\{1, \dots, K_s\} \quad\text{(the true word of slot s, ε allowed)} \\
        y_{s,m} \mid w_s &\sim r_m\,[y = w_s] + \tfrac{1 - r_m}{K_s - 1}\,[y \ne w_s]

    ROVER's frequency vote (Fiscus, 1997) is the special case of equal, known r_m; with
    r_m learnt this is the one-coin Dawid–Skene model (Ghosh et al., 2011) on slots whose
    label set varies, as in Cui et al. (2025, §4) for word-level weak supervision. The
    Beta(4, 2) default says weak models are right more often than not.
    """
    m = choice.shape[1]
    dtype = torch.float64     # the data are integers; the fitters work in double precision
    weak_models = pyro.plate("weak_models", m, dim=-1)
    with weak_models:
        r = pyro.sample("reliability", dist.Beta(torch.tensor(float(reliability_a), dtype=dtype),
                                                 torch.tensor(float(reliability_b), dtype=dtype)))
    return _observe_slots(choice, n_candidates, weak_models, lambda idx: (r.log(), torch.log1p(-r)), dtype,
                          subsample_size)


def word_reliability_conf(choice: torch.Tensor, n_candidates: torch.Tensor, feature: torch.Tensor,
                          intercept_loc: float = 0.7, intercept_scale: float = 1.5, slope_scale: float = 1.0,
                          subsample_size: int | None = None):
    r"""Reliability that depends on the weak model's own confidence in its word.

    .. math::
        \alpha_m &\sim \mathcal N(\mu_\alpha, \sigma_\alpha^2),\quad
        \beta_m \sim \mathcal N(0, \sigma_\beta^2) \\
        r_{s,m} &= \sigma(\alpha_m + \beta_m x_{s,m}) \quad
            \text{(}x\text{: the model's standardised word log-probability, 0 for ε)} \\
        w_s &\sim \mathrm{Uniform}\{1, \dots, K_s\},\quad
        y_{s,m} \mid w_s \sim r_{s,m}\,[y = w_s] + \tfrac{1 - r_{s,m}}{K_s - 1}\,[y \ne w_s]

    β_m > 0 means the model's confidence is informative (its sure words are right more
    often); β_m ≈ 0 recovers :func:`word_reliability` on the logit scale. This is the
    word-level analogue of the soft-label model: the weak model's probability is an
    observation whose calibration is learnt, not trusted.
    """
    m = choice.shape[1]
    dtype = feature.dtype
    weak_models = pyro.plate("weak_models", m, dim=-1)
    with weak_models:
        alpha = pyro.sample("intercept", dist.Normal(torch.tensor(float(intercept_loc), dtype=dtype),
                                                     torch.tensor(float(intercept_scale), dtype=dtype)))
        beta = pyro.sample("slope", dist.Normal(torch.tensor(0.0, dtype=dtype),
                                                torch.tensor(float(slope_scale), dtype=dtype)))
    def log_reliability(idx):
        eta = alpha + beta * feature[idx]                                      # [S, M]
        return torch.nn.functional.logsigmoid(eta), torch.nn.functional.logsigmoid(-eta)
    return _observe_slots(choice, n_candidates, weak_models, log_reliability, dtype, subsample_size)


#: name -> (Pyro model, latent global sites)
WORD_MODELS = {
    "word_reliability": (word_reliability, ("reliability",)),
    "word_reliability_conf": (word_reliability_conf, ("intercept", "slope")),
}
