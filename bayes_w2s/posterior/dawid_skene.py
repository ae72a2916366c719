"""Dawid–Skene by closed-form MAP-EM (vectorised torch).

Generative story (Dawid & Skene, 1979), with conjugate priors::

    π        ~ Dirichlet(α_π · 1_K)                       class prior
    θ_m,k    ~ Dirichlet(β_off · 1_K + (β_diag − β_off) e_k)   confusion row of weak model m
    c_n      ~ Categorical(π)                              true class of item n
    y_n,m    ~ Categorical(θ_m,c_n)                        weak model m's vote (if given)

The diagonal-heavy prior (β_diag > β_off) and the initialisation at the vote break the
label-switching symmetry: EM starts in the mode where most weak models are better than
chance and stays there.
"""
from __future__ import annotations

import torch

from .base import Posterior
from .inputs import LabelMatrix


def fit_dawid_skene_em(lm: LabelMatrix, alpha_prior: float = 1.0, beta_diag: float = 2.0,
                       beta_off: float = 1.0, max_iter: int = 200, tol: float = 1e-6,
                       dtype=torch.float64) -> Posterior:
    counts = torch.as_tensor(lm.counts, dtype=dtype)                  # [N, M, K]
    n, m, k = counts.shape
    # E-step initialisation at the (soft) majority vote
    q = counts.sum(1)
    q = q / q.sum(-1, keepdim=True)                                   # [N, K]
    prior_conf = torch.full((k, k), beta_off - 1.0, dtype=dtype) + torch.eye(k, dtype=dtype) * (beta_diag - beta_off)
    history: list[float] = []
    converged = False
    for _ in range(max_iter):
        # M-step: MAP of the Dirichlet-multinomial posteriors
        pi = q.sum(0) + (alpha_prior - 1.0)
        pi = (pi / pi.sum()).clamp_min(1e-300)
        conf = torch.einsum("nk,nml->mkl", q, counts) + prior_conf     # [M, K(true), K(obs)]
        conf = (conf / conf.sum(-1, keepdim=True)).clamp_min(1e-300)
        # E-step: log p(c_n = k | y_n) ∝ log π_k + Σ_m Σ_l counts_nml log θ_mkl
        log_joint = pi.log() + torch.einsum("nml,mkl->nk", counts, conf.log())
        norm = torch.logsumexp(log_joint, -1, keepdim=True)
        q = (log_joint - norm).exp()
        objective = float(norm.sum() + ((alpha_prior - 1) * pi.log()).sum() + (prior_conf * conf.log()).sum())
        if history and abs(objective - history[-1]) < tol * max(1.0, abs(objective)):
            history.append(objective)
            converged = True
            break
        history.append(objective)
    return Posterior(item_probs=q.numpy(), confusion=conf.numpy(), class_prior=pi.numpy(),
                     model_names=lm.model_names, label_names=lm.label_names, item_ids=lm.item_ids,
                     model="dawid_skene", method="em", history=history, converged=converged)
