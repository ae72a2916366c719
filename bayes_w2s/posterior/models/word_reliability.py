"""Word-level reliability models over aligned weak hypotheses (generation tasks).

The weak generators' outputs for one item are aligned into a confusion network
(:mod:`bayes_w2s.align.confusion_network`); every slot ``s`` of every item becomes one
row of a flat table (:func:`~bayes_w2s.posterior.words.slot_table`): its ``K_s``
candidate words (ε, the empty word, included when some model has none there) and
``choice[s, m]``, the candidate weak model ``m`` put there.

Error model. A weak model either puts the true word in the slot (probability ``r``) or
emits a draw from a *noise distribution* ``q`` over the whole word vocabulary, ε
included. ``q`` is the smoothed unigram frequency of the weak outputs themselves, so two
models that err the same way on a rare word are a coincidence the model pays for, while
agreeing on a frequent word (ε, a common slot name) is cheap. (Spreading the error mass
over the slot's *observed* candidates, ``(1 − r)/(K_s − 1)``, makes the likelihood depend
on the observations through ``K_s``; its optimum made the least reliable model the
"dictator" whose words every other model was explained against: 10 of 10 simulated runs.)

Layout, as for the classification models: plate ``"weak_models"`` (dim −1, size M) holds
the reliabilities; plate ``"slots"`` (dim −2, size S, subsampled for large S) holds the
true word ``w_s``, a discrete site enumerated in parallel; observation ``"y"`` sits in
``slots × weak_models``. Candidates are padded to a common width with impossible entries;
the observation's last category is "any word that is not a candidate here", which no
model chose (candidates are the words chosen) but which keeps each row normalised.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch.nn.functional import logsigmoid

from ..engine import (CONCENTRATION, DTYPE, POSITIVE, REAL, REAL_SUPPORT, UNIT, Fit, ModelData, PosteriorModel,
                      Site, dirichlet_log_density, fit_em)
from ..words import WordPosterior, _branches, _tensors, slot_log_joint


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
        return logsigmoid(eta), logsigmoid(-eta)
    return _observe_slots(choice, n_candidates, noise_logprob, noise_rest, weak_models, log_reliability, dtype,
                          subsample_size)


class WordModel(PosteriorModel):
    """A posterior over each confusion-network slot's true word."""

    observes = "words"
    data_args: ClassVar[tuple] = ("choice", "n_candidates", "noise_logprob", "noise_rest")
    methods = ("em", "svi", "nuts", "hmc")

    def prepare(self, table, p, gold=None) -> ModelData:
        if gold is not None:
            raise NotImplementedError("gold words are not supported yet")
        choice, n_cand, onehot, feature, noise, rest = _tensors(table)
        args = (choice, n_cand, noise, rest) + ((feature,) if "feature" in self.data_args else ())
        return ModelData({"onehot": onehot, "n_cand": n_cand, "feature": feature, "noise": noise},
                         torch.ones(len(choice), dtype=DTYPE), None, args, {}, None, table)

    def log_reliability(self, g, log_g, feature):
        """``(log r, log(1 − r))`` broadcastable to ``[..., S, M]``."""
        raise NotImplementedError

    def log_joint(self, obs, g, log_g, p, lik_weight=1.0):
        log_r, log_not_r = self.log_reliability(g, log_g, obs["feature"])
        return slot_log_joint(obs["onehot"], obs["n_cand"], obs["noise"], log_r, log_not_r, lik_weight)

    def copied(self, data, q, g):
        """``[S, M]`` E[weak model m copied the true word]: its word is true (q_s) and came
        from the r branch."""
        log_r, log_not_r = self.log_reliability(g, self.logs(g), data.obs["feature"])
        _, hit = _branches(data.obs["onehot"], data.obs["noise"], log_r, log_not_r)
        return torch.einsum("sw,smw->sm", q, data.obs["onehot"]) * (log_r - hit).exp()

    def start_levels(self, m: int, restarts: bool) -> list[torch.Tensor]:
        """The symmetric start (every model equally reliable) and, with ``restarts``, one
        start per weak model in which that model is the reliable one. The likelihood has
        "dictator" modes — one model's reliability → 1 and the consensus copies it — so a
        single start ends in whichever mode is nearest; EM keeps the best log joint."""
        levels = [torch.full((m,), 0.7, dtype=DTYPE)]
        if restarts and m > 1:
            for lead in range(m):
                r = torch.full((m,), 0.5, dtype=DTYPE)
                r[lead] = 0.9
                levels.append(r)
        return levels

    def init(self, data, p, seed=0):
        """The MAP (EM with restarts): where SVI and NUTS start."""
        return {s: v[0, 0] for s, v in fit_em(self, data, p, max_iter=500, tol=1e-9).draws.items()}

    def summarise(self, data, fit: Fit, method, p, temperature=1.0):
        """Slot posteriors (Rao–Blackwellised over draws), reliabilities and per-item log-lik."""
        table = data.source
        draws = fit.draws
        w = 1.0 / temperature
        with torch.no_grad():
            log_g = self.logs(draws)
            log_r, _ = self.log_reliability(draws, log_g, data.obs["feature"])
            joint = self.log_joint(data.obs, draws, log_g, p, w)                     # [C, D, S, W]
            probs = (joint - torch.logsumexp(joint, -1, keepdim=True)).exp().mean((0, 1))
            slot_ll = torch.logsumexp(self.log_joint(data.obs, draws, log_g, p, 1.0) if w != 1.0 else joint, -1)
            r = log_r.exp().expand(*log_r.shape[:-2], len(table.candidates), log_r.shape[-1]).mean(-2)
        log_lik = np.zeros(slot_ll.shape[:2] + (table.num_items,))
        np.add.at(log_lik, (slice(None), slice(None), table.item_of_slot), slot_ll.numpy())
        r = r.reshape(-1, r.shape[-1]).numpy()
        return WordPosterior(table=table, slot_probs=probs.numpy(), reliability=r.mean(0),
                             reliability_sd=r.std(0) if len(r) > 1 else None, model=self.name, method=method,
                             draws={s: v.numpy() for s, v in draws.items()}, log_lik=log_lik,
                             history=list(fit.history), converged=fit.converged, sample_stats=fit.sample_stats,
                             info=dict(fit.info), priors=dict(p), temperature=temperature)


class WordReliability(WordModel):
    name = "word_reliability"
    fn = staticmethod(word_reliability)
    sites = {"reliability": Site(UNIT, ("weak_model",))}
    prior_specs = {"reliability_a": CONCENTRATION, "reliability_b": CONCENTRATION}

    def log_reliability(self, g, log_g, feature):
        lr = log_g["reliability"].unsqueeze(-3)                                      # [..., 1, M, 2]
        return lr[..., 0], lr[..., 1]

    def log_prior(self, g, log_g, p):
        beta = torch.tensor([float(p["reliability_a"]), float(p["reliability_b"])], dtype=DTYPE)
        return dirichlet_log_density(beta, log_g["reliability"]).sum(-1)

    def em_starts(self, data, p, restarts, seed):
        return [{"reliability": r} for r in self.start_levels(data.obs["onehot"].shape[1], restarts)]

    def m_step(self, data, q, g, p):
        """Closed form: r_m = (a − 1 + Σ_s E[m copied]) / (a + b − 2 + S)."""
        right = self.copied(data, q, g)
        a, b = float(p["reliability_a"]), float(p["reliability_b"])
        total = right.shape[0]
        return {"reliability": ((a - 1 + right.sum(0)) / (a + b - 2 + total)).clamp(1e-6, 1 - 1e-6)}


class WordReliabilityConf(WordModel):
    name = "word_reliability_conf"
    fn = staticmethod(word_reliability_conf)
    data_args = ("choice", "n_candidates", "noise_logprob", "noise_rest", "feature")
    sites = {"intercept": Site(REAL_SUPPORT, ("weak_model",)), "slope": Site(REAL_SUPPORT, ("weak_model",))}
    prior_specs = {"intercept_loc": REAL, "intercept_scale": POSITIVE, "slope_scale": POSITIVE}

    def log_reliability(self, g, log_g, feature):
        eta = g["intercept"].unsqueeze(-2) + g["slope"].unsqueeze(-2) * feature      # [..., S, M]
        return logsigmoid(eta), logsigmoid(-eta)

    def log_prior(self, g, log_g, p):
        a = dist.Normal(torch.tensor(float(p["intercept_loc"]), dtype=DTYPE),
                        torch.tensor(float(p["intercept_scale"]), dtype=DTYPE))
        b = dist.Normal(torch.tensor(0.0, dtype=DTYPE), torch.tensor(float(p["slope_scale"]), dtype=DTYPE))
        return a.log_prob(g["intercept"]).sum(-1) + b.log_prob(g["slope"]).sum(-1)

    def em_starts(self, data, p, restarts, seed):
        levels = self.start_levels(data.obs["onehot"].shape[1], restarts)
        # the symmetric start sits at the prior's centre, the others at the same levels as above
        return [{"intercept": torch.full_like(r, float(p["intercept_loc"])) if i == 0 else torch.logit(r),
                 "slope": torch.zeros_like(r)} for i, r in enumerate(levels)]

    def m_step(self, data, q, g, p, steps: int = 20):
        """A few L-BFGS steps of the q-weighted logistic regression (generalised EM)."""
        right = self.copied(data, q, g)
        feature = data.obs["feature"]
        params = {k: v.clone().requires_grad_(True) for k, v in g.items()}
        opt = torch.optim.LBFGS(list(params.values()), max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            eta = params["intercept"] + params["slope"] * feature
            loss = -(right * logsigmoid(eta) + (1 - right) * logsigmoid(-eta)).sum() \
                - self.log_prior(params, None, p)
            loss.backward()
            return loss
        opt.step(closure)
        return {k: v.detach() for k, v in params.items()}
