"""Why the Dirichlet soft-label posterior loses to the vote on AG News — measured.

Hypothesis under test: the Dirichlet log-density Σ_l (λ_{c,m,l} − 1) log p_{n,m,l} is linear
in the log of *every* class probability, so the logs of the smallest (clipped) probabilities,
which span orders of magnitude, decide the item posterior ("how small the wrong classes are")
rather than which class each weak model ranks first.

For one results folder's seed-0 weak labels on strong_train (hidden truth from the config's
split) the script reports:

1. accuracy / log-loss of the vote, Dawid–Skene, the soft-label posterior (at several clip
   levels ε) and the logistic-t model that replaces it;
2. for each item, the log-likelihood ratio between the soft posterior's class and the
   runner-up, split into the part carried by each weak model's *top* class coordinate and
   the part carried by its other coordinates, and how often the other coordinates alone
   decide the item;
3. the same split on the items the soft posterior gets wrong and the vote gets right, and
   the Dirichlet fitted on the true labels against the unsupervised fit;
4. the logistic-t model with one scale matrix for every class against one per class
   (``logistic_t_hetero``), unsupervised and fitted on the true labels, with how unequal the
   classes' spreads are.

    python experiments/diagnose_soft_label.py experiments/configs/agnews.yaml \
        --out experiments/results/soft_label_diagnosis
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from bayes_w2s import WeakLabels, fit_posterior
from bayes_w2s.config import ExperimentConfig
from bayes_w2s.metrics import accuracy, expected_calibration_error, hits
from bayes_w2s.pipeline import experiment_task
from bayes_w2s.posterior.calibration import log_loss


def decompose(post, probs_clipped: np.ndarray):
    """Per item: log-lik ratio (chosen class vs runner-up) from each weak model's top-class
    coordinate and from its other coordinates (normalisers included in neither: they do not
    depend on the item)."""
    lam = post.draws["concentration"].reshape(-1, *post.draws["concentration"].shape[-3:]).mean(0)  # [K, M, L]
    log_p = np.log(probs_clipped)                                                          # [N, M, L]
    order = np.argsort(-post.item_probs, axis=-1)
    first, second = order[:, 0], order[:, 1]
    diff = lam[first] - lam[second]                                                        # [N, M, L]
    contrib = diff * log_p                                                                 # [N, M, L]
    top = probs_clipped.argmax(-1)                                                         # [N, M]
    is_top = np.zeros_like(contrib, dtype=bool)
    np.put_along_axis(is_top, top[..., None], True, axis=-1)
    from_top = (contrib * is_top).sum((1, 2))
    from_rest = (contrib * ~is_top).sum((1, 2))
    return from_top, from_rest


def marginal_log_lik(post, probs_clipped: np.ndarray) -> float:
    """Σ_n log Σ_k π_k Dir(p_n | λ_k): how well the fitted globals explain the observations."""
    from scipy.special import gammaln, logsumexp
    lam = post.draws["concentration"].reshape(-1, *post.draws["concentration"].shape[-3:]).mean(0)  # [K, M, L]
    norm = (gammaln(lam.sum(-1)) - gammaln(lam).sum(-1)).sum(-1)                           # [K]
    ll = np.einsum("nml,kml->nk", np.log(probs_clipped), lam - 1) + norm
    return float(logsumexp(ll + np.log(post.class_prior), axis=-1).sum())


def logistic_t_scales(wl, y) -> list[str]:
    """Section 4: the logistic-t model with one scale matrix for every class against one per
    class — unsupervised, and with its globals fitted on the true labels; the marginal
    log-likelihood of each fit says whether the unsupervised optimum is a worse fit (the
    optimiser) or a better one (the likelihood) — and how unequal the classes' spreads are (per weak model, the interquartile range of its log-odds of each
    class against the last, over the items of each true class)."""
    log_p = np.log(np.clip(wl.probs, 1e-6, None))
    z = log_p[..., :-1] - log_p[..., -1:]                                                 # [N, M, K−1]
    classes = range(wl.probs.shape[-1])
    iqr = np.stack([np.subtract(*np.percentile(z[y == k], [75, 25], axis=0)) for k in classes])   # [K, M, K−1]
    spread = iqr.max(0) / iqr.min(0)
    lines = ["", "## 4. Logistic-t: one scale matrix for all classes, or one per class", "",
             "Per weak model and log-odds coordinate, the widest class's interquartile range over the "
             f"narrowest's: {', '.join(f'{r:.2f}' for r in spread.ravel())}.", "",
             "| model | accuracy, unsupervised (%) | class prior π̂ | accuracy, globals fitted on the truth (%) "
             "| marginal log-lik., unsupervised | marginal log-lik., fitted on the truth |",
             "|---|---|---|---|---|---|"]
    share = ", ".join(f"{np.mean(y == k):.3f}" for k in classes)
    for name in ("logistic_t", "logistic_t_hetero"):
        post = fit_posterior(wl, model=name, method="em")
        truth_fit = fit_posterior(wl, model=name, method="em", gold=y)
        lines.append(f"| {name} | {100 * accuracy(post.item_probs, y):.1f} "
                     f"| {', '.join(f'{v:.3f}' for v in post.class_prior)} "
                     f"| {100 * accuracy(truth_fit.predict_proba(wl), y):.1f} "
                     f"| {t_marginal_log_lik(post, wl):.1f} | {t_marginal_log_lik(truth_fit, wl):.1f} |")
    lines.append(f"| (true class shares) | | {share} | | | |")
    return lines


def t_marginal_log_lik(post, wl) -> float:
    """Σ_n log Σ_k π_k p(z_n | class k) at a point fit's globals."""
    from bayes_w2s.posterior import as_label_matrix, get_model
    model = get_model(post.model)
    data = model.prepare(as_label_matrix(wl), post.priors)
    g = {s: torch.as_tensor(v[0, 0]) for s, v in post.draws.items() if s in model.sites}
    log_joint = model.log_joint(data.obs, g, model.logs(g), post.priors)
    return float((data.weight * torch.logsumexp(log_joint, -1)).sum())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("--results", help="results folder holding weak_labels_seed0_strong_train.npz "
                                     "(default: experiments/results/<config name>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiments/results/soft_label_diagnosis")
    args = p.parse_args(argv)

    cfg = ExperimentConfig.from_yaml(args.config)
    results = Path(args.results or f"experiments/results/{cfg.name}")
    wl = WeakLabels.load(results / f"weak_labels_seed{args.seed}_strong_train.npz")
    split = experiment_task(cfg).strong_train
    truth = dict(zip(split["id"], split["label"]))
    y = np.array([truth[i] for i in wl.item_ids])
    torch.manual_seed(0)

    rows = []

    def row(name, probs):
        rows.append({"posterior": name, "accuracy": round(100 * accuracy(probs, y), 2),
                     "ECE": round(100 * expected_calibration_error(probs, y), 2),
                     "log-loss": round(log_loss(probs, y), 3)})

    votes = np.eye(wl.probs.shape[-1])[wl.probs.argmax(-1)].sum(1)
    row("vote", votes / votes.sum(-1, keepdims=True))
    row("Dawid–Skene (EM)", fit_posterior(wl, model="dawid_skene", method="em").item_probs)
    soft = {}
    for eps in (1e-4, 1e-3, 1e-2, 0.05):
        soft[eps] = fit_posterior(wl, model="soft", method="em", eps=eps)
        row(f"soft-label (Dirichlet), ε = {eps:g}", soft[eps].item_probs)
    # the replacement, at its defaults and with the priors that might anchor an unsupervised fit
    for label, kw in [("", {}), (", class means held closer to their prior (mean_scale 0.5)", {"mean_scale": 0.5}),
                      (", lighter tails (df 4)", {"df": 4.0})]:
        row(f"logistic-t (EM){label}", fit_posterior(wl, model="logistic_t", method="em", **kw).item_probs)

    post = soft[1e-4]
    clipped = np.clip(wl.probs, 1e-4, None)
    clipped = clipped / clipped.sum(-1, keepdims=True)
    from_top, from_rest = decompose(post, clipped)
    total = from_top + from_rest
    share_rest = np.abs(from_rest) / (np.abs(from_top) + np.abs(from_rest))
    rest_decides = (np.sign(from_rest) == np.sign(total)) & (np.abs(from_rest) > np.abs(from_top))
    soft_wrong = post.item_probs.argmax(-1) != y
    vote_right = hits(votes, y) == 1           # the vote right without a tie
    harmed = soft_wrong & vote_right
    small = (clipped < 1e-2).mean()
    lines = [
        f"# The soft-label (Dirichlet) posterior on {cfg.name}, seed {args.seed}: where its decisions come from",
        "",
        f"{wl.num_items} strong_train items, {len(wl.model_names)} weak models ({', '.join(wl.model_names)}), "
        f"{wl.probs.shape[-1]} classes; truth hidden from every fit. {100 * small:.1f}% of the weak "
        "probabilities are below 0.01.",
        "",
        "## 1. Posteriors against the hidden truth (%)",
        "",
        "| posterior | accuracy | ECE | log-loss |",
        "|---|---|---|---|",
        *[f"| {r['posterior']} | {r['accuracy']} | {r['ECE']} | {r['log-loss']} |" for r in rows],
        "",
        "## 2. What decides the soft posterior's class (ε = 1e-4)",
        "",
        "Log-likelihood ratio of the chosen class against the runner-up, Σ_m Σ_l (λ_{k̂,m,l} − λ_{k₂,m,l}) "
        "log p_{n,m,l}, split into each weak model's top-class coordinate and its other coordinates.",
        "",
        "| items | n | median share of \\|ratio\\| from non-top coordinates | non-top coordinates outweigh and agree with the decision |",
        "|---|---|---|---|",
    ]
    for name, mask in [("all", np.ones_like(soft_wrong)), ("soft wrong", soft_wrong),
                       ("soft wrong, vote right", harmed), ("soft right", ~soft_wrong)]:
        if mask.sum():
            lines.append(f"| {name} | {int(mask.sum())} | {100 * np.median(share_rest[mask]):.1f}% "
                         f"| {100 * rest_decides[mask].mean():.1f}% |")
    supervised = fit_posterior(wl, model="soft", method="em", gold=y)     # globals fitted on the truth
    refit = supervised.predict_proba(wl)                                   # then the items without it
    lines += [
        "",
        "## 3. The fit or the likelihood?",
        "",
        "The same Dirichlet likelihood with its globals fitted on the *true* labels (then every item "
        "classified without them), against the unsupervised fit; marginal log-likelihood "
        "Σ_n log Σ_k π_k Dir(p_n | λ_k) of the observations under each.",
        "",
        "| globals | accuracy (%) | marginal log-likelihood |",
        "|---|---|---|",
        f"| unsupervised EM (the soft posterior) | {100 * accuracy(post.item_probs, y):.2f} "
        f"| {marginal_log_lik(post, clipped):.1f} |",
        f"| fitted on the true labels | {100 * accuracy(refit, y):.2f} | {marginal_log_lik(supervised, clipped):.1f} |",
        f"| vote (for reference) | {100 * accuracy(votes, y):.2f} | – |",
    ]
    ml_fit, ml_truth = marginal_log_lik(post, clipped), marginal_log_lik(supervised, clipped)
    eps_acc = {eps: accuracy(f.item_probs, y) for eps, f in soft.items()}
    verdict = ("the likelihood, not the optimiser: the unsupervised optimum explains the observations "
               f"better than the true classes do ({ml_fit - ml_truth:+.0f} nats) yet classifies worse, so the "
               "Dirichlet prefers classes organised around the pattern of the small probabilities"
               if ml_fit > ml_truth and accuracy(post.item_probs, y) < accuracy(refit, y) else
               "the optimiser: the truth-fitted globals explain the observations at least as well, so a "
               "better fit (more starts) would find them")
    clip_note = ("Raising ε, which shrinks the logs of the clipped probabilities, makes it *worse* "
                 f"({100 * eps_acc[1e-4]:.1f}% → {100 * eps_acc[0.05]:.1f}%), so the clipping itself is not the cause."
                 if eps_acc[0.05] < eps_acc[1e-4] else
                 "Raising ε, which shrinks the logs of the clipped probabilities, helps "
                 f"({100 * eps_acc[1e-4]:.1f}% → {100 * eps_acc[0.05]:.1f}%).")
    lines += ["", f"**Verdict.** It is {verdict}. {clip_note}"]
    lam = post.draws["concentration"].reshape(-1, *post.draws["concentration"].shape[-3:]).mean(0)
    diag = np.mean([lam[k, :, k] for k in range(lam.shape[0])])
    off = np.mean([lam[k, :, j] for k in range(lam.shape[0]) for j in range(lam.shape[0]) if j != k])
    lines += [
        "",
        f"Fitted concentrations: mean λ on the true class {diag:.2f}, on the other classes {off:.2f}. "
        "Any λ_{k,m,l} below 1 turns a small p_{n,m,l} into evidence *for* class k: the smaller the "
        "probability, the larger the weight of its log.",
        *logistic_t_scales(wl, y),
        "",
        "```",
        "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "```",
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.md").write_text("\n".join(lines) + "\n")
    (out / "result.json").write_text(json.dumps({"rows": rows, "share_rest_median": float(np.median(share_rest)),
                                                 "rest_decides": float(rest_decides.mean()),
                                                 "rest_decides_harmed": float(rest_decides[harmed].mean())
                                                 if harmed.any() else None}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
