"""Generative models of weak *word* hypotheses, as plain Pyro functions.

The weak generators' outputs for one item are aligned into a confusion network
(:mod:`bayes_w2s.align.confusion_network`); every slot ``s`` of every item becomes one
row of a flat table: its ``K_s`` candidate words (ε, the empty word, included when some
model has none there) and ``choice[s, m]``, the candidate weak model ``m`` put there.

Error model. A weak model either puts the true word in the slot (probability ``r``) or
emits a draw from a *noise distribution* ``q`` over the whole word vocabulary, ε
included. ``q`` is the smoothed unigram frequency of the weak outputs themselves
(:func:`bayes_w2s.posterior.words.slot_table`), so two models that err the same way on a
rare word are a coincidence the model pays for, while agreeing on a frequent word (ε, a
common slot name) is cheap. An earlier version spread the error mass over the slot's
*observed* candidates, ``(1 − r)/(K_s − 1)``; that likelihood depends on the observations
through ``K_s`` and its optimum made the *least* reliable model the "dictator" whose
words every other model was explained against (simulated, 3 models: 10 of 10 runs).

Layout, as for the classification models: plate ``"weak_models"`` (dim −1, size M) holds
the reliabilities; plate ``"slots"`` (dim −2, size S, subsampled for large S) holds the
true word ``w_s``, a discrete site enumerated in parallel; observation ``"y"`` sits in
``slots × weak_models``. Candidates are padded to a common width with impossible entries;
the observation's last category is "any word that is not a candidate here", which no
model chose (candidates are the words chosen) but which keeps each row normalised.
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch


def word_choice_logits(w: torch.Tensor, log_r: torch.Tensor, log_not_r: torch.Tensor,
                       noise_logprob: torch.Tensor, noise_rest: torch.Tensor) -> torch.Tensor:
    """``[..., S, M, width + 1]`` log p(y = k | w) = log(r [k = w] + (1 − r) q_k) for the
    slot's candidates ``k``, −∞ for padding, and log((1 − r) q_rest) for the last category
    (every other word of the vocabulary). ``noise_logprob`` ``[S, width]`` is log q of each
    candidate (−∞ for padding), ``noise_rest`` ``[S]`` log of q's mass off the candidates."""
    width = noise_logprob.shape[-1]
    same = torch.arange(width) == w.unsqueeze(-1)                            # [..., S, 1, width]
    err = log_not_r.unsqueeze(-1) + noise_logprob.unsqueeze(-2)               # [..., S, M, width]
    hit = torch.logaddexp(log_r.unsqueeze(-1), err)
    logits = torch.where(same, hit, err)
    rest = (log_not_r + noise_rest.unsqueeze(-1)).unsqueeze(-1)               # [..., S, M, 1]
    return torch.cat([logits, rest.expand(*logits.shape[:-1], 1)], -1)


def _true_word_prior(n_candidates: torch.Tensor, width: int, dtype) -> torch.Tensor:
    """``[S, 1, width]`` uniform logits over the slot's candidates."""
    real = (torch.arange(width) < n_candidates.unsqueeze(-1)).unsqueeze(-2)
    return torch.zeros(real.shape, dtype=dtype).masked_fill(~real, float("-inf"))


def _observe_slots(choice, n_candidates, noise_logprob, noise_rest, weak_models, log_reliability, dtype,
                   subsample_size):
    """Shared tail: w_s ~ Uniform over the slot's candidates; y_s,m | w_s as in the models.
    ``log_reliability(idx)`` gives ``(log r, log(1 − r))`` for the (subsampled) slots."""
    width = noise_logprob.shape[-1]
    with pyro.plate("slots", choice.shape[0], dim=-2, subsample_size=subsample_size) as idx:
        w = pyro.sample("w", dist.Categorical(logits=_true_word_prior(n_candidates[idx], width, dtype)),
                        infer={"enumerate": "parallel"})
        with weak_models:
            logits = word_choice_logits(w, *log_reliability(idx), noise_logprob[idx], noise_rest[idx])
            pyro.sample("y", dist.Categorical(logits=logits), obs=choice[idx])
    return w


def word_reliability(choice: torch.Tensor, n_candidates: torch.Tensor, noise_logprob: torch.Tensor,
                     noise_rest: torch.Tensor, reliability_a: float = 4.0, reliability_b: float = 2.0,
                     subsample_size: int | None = None):
    r"""ROVER with learnt reliabilities: one probability per weak model of putting the
    true word in a slot, and a shared noise distribution ``q`` for its errors.

    .. math::
        r_m &\sim \mathrm{Beta}(a, b) \\
        w_s &\sim \mathrm{Uniform}\{1, \dots, K_s\} \quad\text{(the true word of slot s, ε allowed)} \\
        y_{s,m} \mid w_s &\sim r_m\,\delta_{w_s} + (1 - r_m)\, q

    ROVER's frequency vote (Fiscus, 1997) is the special case of equal, known r_m; with
    r_m learnt this is the one-coin Dawid–Skene model (Ghosh et al., 2011) with a
    non-uniform error distribution, on slots whose label set varies, as in Cui et al.
    (2025, §4) for word-level weak supervision. The Beta(4, 2) default says weak models
    are right more often than not.
    """
    m = choice.shape[1]
    dtype = noise_logprob.dtype
    weak_models = pyro.plate("weak_models", m, dim=-1)
    with weak_models:
        r = pyro.sample("reliability", dist.Beta(torch.tensor(float(reliability_a), dtype=dtype),
                                                 torch.tensor(float(reliability_b), dtype=dtype)))
    return _observe_slots(choice, n_candidates, noise_logprob, noise_rest, weak_models,
                          lambda idx: (r.log(), torch.log1p(-r)), dtype, subsample_size)


def word_reliability_conf(choice: torch.Tensor, n_candidates: torch.Tensor, noise_logprob: torch.Tensor,
                          noise_rest: torch.Tensor, feature: torch.Tensor, intercept_loc: float = 0.7,
                          intercept_scale: float = 1.5, slope_scale: float = 1.0,
                          subsample_size: int | None = None):
    r"""Reliability that depends on the weak model's own confidence in its word.

    .. math::
        \alpha_m &\sim \mathcal N(\mu_\alpha, \sigma_\alpha^2),\quad
        \beta_m \sim \mathcal N(0, \sigma_\beta^2) \\
        r_{s,m} &= \sigma(\alpha_m + \beta_m x_{s,m}) \quad
            \text{(}x\text{: the model's standardised word log-probability, 0 for ε)} \\
        w_s &\sim \mathrm{Uniform}\{1, \dots, K_s\},\quad
        y_{s,m} \mid w_s \sim r_{s,m}\,\delta_{w_s} + (1 - r_{s,m})\, q

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
    return _observe_slots(choice, n_candidates, noise_logprob, noise_rest, weak_models, log_reliability, dtype,
                          subsample_size)


#: name -> (Pyro model, latent global sites)
WORD_MODELS = {
    "word_reliability": (word_reliability, ("reliability",)),
    "word_reliability_conf": (word_reliability_conf, ("intercept", "slope")),
}
