# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Posterior diagnostics on real weak labels
#
# The pipeline (`bayes-w2s run experiments/configs/{sst2,agnews}.yaml`) saves the weak labels
# its three weak models (MiniLM-L6, SmolLM2-135M, Gemma-3-270M) gave the strong model's
# training split. Here we fit the Pyro posterior models on them, check convergence the way
# one should before trusting a posterior (trace plots, R-hat, ESS, divergences), look at
# what each model learnt about each weak supervisor, test the posterior confidences against
# held-out truth, and compare the models by PSIS-LOO.
#
# Settings are small (2 chains × 300 draws; the test-suite runs 2 × 100) so that the
# notebook runs in minutes; use 4 chains × 1000 draws for real work.

# %%
import os
import warnings
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import arviz as az
import yaml

from bayes_w2s import WeakLabels, load_task, fit_posterior, compare_posteriors
from bayes_w2s.metrics import accuracy

SMALL = os.environ.get("BAYES_W2S_NOTEBOOK_SMALL") == "1"     # set by the test-suite
CHAINS, DRAWS, WARMUP = (2, 100, 100) if SMALL else (2, 300, 200)
NUTS = dict(method="nuts", num_chains=CHAINS, num_samples=DRAWS, warmup_steps=WARMUP, progress=False)


def weak_labels_and_truth(task_name):
    """Seed-0 weak labels of strong_train saved by the pipeline, and those items' truth."""
    wl = WeakLabels.load(f"../experiments/results/{task_name}/weak_labels_seed0_strong_train.npz")
    cfg = yaml.safe_load(open(f"../experiments/configs/{task_name}.yaml"))
    split = load_task(cfg["task"], seed=cfg["split_seed"], sizes=cfg["sizes"]).strong_train
    truth = dict(zip(split["id"], split["label"]))
    return wl, np.array([truth[i] for i in wl.item_ids])


sst2, y_sst2 = weak_labels_and_truth("sst2")
agnews, y_agnews = weak_labels_and_truth("agnews")
for name, wl, y in [("SST-2", sst2, y_sst2), ("AG News", agnews, y_agnews)]:
    print(name, wl.probs.shape, {m: round(accuracy(wl.model(m), y), 3) for m in wl.model_names},
          "vote", round(accuracy(wl.majority_vote(), y), 3))

# %% [markdown]
# ## 1. Fit: the vote models by NUTS (true class summed out, then drawn from its conditional)
#
# Chains start at the Dawid–Skene MAP, in the mode where weak models beat chance, so they
# cannot wander into a label-switched mode.

# %%
fits = {}
for task_name, wl in [("sst2", sst2), ("agnews", agnews)]:
    for model in ["dawid_skene", "one_coin", "hierarchical"]:
        fits[task_name, model] = fit_posterior(wl, model=model, **NUTS)
    fits[task_name, "soft"] = fit_posterior(wl, model="soft", **NUTS)
rows = []
for (task_name, model), post in fits.items():
    with warnings.catch_warnings(record=True):
        d = post.diagnostics()
    y = y_sst2 if task_name == "sst2" else y_agnews
    rows.append({"task": task_name, "model": model, "max R-hat": round(d["max_rhat"], 4),
                 "min bulk ESS": round(d["min_ess_bulk"]), "divergences": d["divergences"],
                 "label accuracy": round(accuracy(post.item_probs, y), 4)})
pd.DataFrame(rows)

# %% [markdown]
# With chains this short, most R-hat values sit just above 1.01 and `diagnostics()` warns
# (the warnings are caught above to keep the table readable): the remedy is more draws,
# not a different model. The hierarchical model mixes slowest (R-hat ≈ 1.03, bulk ESS
# ≈ 160): its population concentration κ and the θ it pools are strongly coupled. The
# vote models' labels are within a point of each other, because the three weak models
# mostly agree; the Dirichlet soft-label model is 5 points worse on AG News (its
# likelihood is misspecified there: `experiments/results/soft_label_diagnosis/agnews`).

# %% [markdown]
# ## 2. Trace plots: class prior and the one-coin accuracies (SST-2)

# %%
az.plot_trace(fits["sst2", "one_coin"].to_inference_data(), var_names=["pi", "accuracy"], compact=True)
plt.tight_layout()

# %% [markdown]
# R-hat and effective sample size per parameter (Dawid–Skene, AG News):

# %%
az.summary(fits["agnews", "dawid_skene"].to_inference_data(), var_names=["theta"])[
    ["mean", "sd", "ess_bulk", "ess_tail", "r_hat"]].head(12)

# %% [markdown]
# ## 3. What the posterior learnt about each weak model
#
# Posterior mean confusion matrices (row = true class, column = weak label) on AG News, with
# the posterior standard deviation in brackets.

# %%
post = fits["agnews", "dawid_skene"]
fig, axes = plt.subplots(1, len(post.model_names), figsize=(4 * len(post.model_names), 3.6))
for ax, name, conf, sd in zip(axes, post.model_names, post.confusion, post.confusion_sd):
    ax.imshow(conf, vmin=0, vmax=1, cmap="Blues")
    for i in range(conf.shape[0]):
        for j in range(conf.shape[1]):
            ax.text(j, i, f"{conf[i, j]:.2f}\n({sd[i, j]:.2f})", ha="center", va="center", fontsize=7,
                    color="white" if conf[i, j] > 0.5 else "black")
    ax.set(title=name, xticks=range(len(post.label_names)), yticks=range(len(post.label_names)),
           xticklabels=post.label_names, yticklabels=post.label_names, xlabel="weak label", ylabel="true class")
    ax.tick_params(axis="x", rotation=45)
plt.tight_layout()


# %% [markdown]
# ## 4. Are the posterior confidences calibrated? (held-out truth)
#
# The truth of strong_train was never shown to the weak models or the posterior.

# %%
def reliability(probs, y, bins=10):
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(1 / probs.shape[1], 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges) - 1, 0, bins - 1)
    keep = [b for b in range(bins) if (idx == b).sum() >= 10]
    return ([conf[idx == b].mean() for b in keep], [(pred[idx == b] == y[idx == b]).mean() for b in keep])


fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, task_name, y in [(axes[0], "sst2", y_sst2), (axes[1], "agnews", y_agnews)]:
    wl = sst2 if task_name == "sst2" else agnews
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    for label, probs in [("weak mean", wl.mean()), ("Dawid–Skene", fits[task_name, "dawid_skene"].item_probs),
                         ("soft-label", fits[task_name, "soft"].item_probs)]:
        x, acc = reliability(probs, y)
        ax.plot(x, acc, marker="o", label=label)
    ax.set(title=task_name, xlabel="confidence", ylabel="accuracy on held-out truth", xlim=(0.2, 1), ylim=(0.2, 1))
    ax.legend()
plt.tight_layout()

# %% [markdown]
# ## 5. Model comparison by PSIS-LOO
#
# Only models of the same observations are comparable: the three vote models observe the
# weak models' argmax votes; the soft-label model observes their probability vectors.

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    table = compare_posteriors([fits["sst2", m] for m in ["dawid_skene", "one_coin", "hierarchical"]],
                               names=["Dawid–Skene", "one-coin", "hierarchical"])
table[["rank", "elpd_loo", "p_loo", "elpd_diff", "dse", "weight"]]

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    az.plot_compare(table)

# %% [markdown]
# ## 6. Correlated weak models: gold items, a tempered likelihood, EBCC, logistic-t
#
# Section 4 shows every posterior over-confident: the weak models' errors are correlated
# (the same hard items fool all three), and each model counts them as independent
# evidence. The pipeline holds out a gold slice of weak_train (`weak_val_size: 200`) that
# no weak model trains on; its weak labels are saved beside the others. Gold items can be
# observed (semi-supervised), and they choose the temperature T of the power likelihood
# p(y | c)^{1/T} (`choose_temperature`: the T whose fit best predicts the gold items, their
# classes hidden). EBCC explains correlated errors with latent subtypes; the logistic-t
# model correlates the weak models' log-odds.

# %%
from bayes_w2s.config import ExperimentConfig
from bayes_w2s.pipeline import experiment_task
from bayes_w2s.posterior.calibration import choose_temperature, log_loss
from bayes_w2s.metrics import expected_calibration_error
from bayes_w2s.student.posterior_targets import concat


def gold_slice(task_name):
    """Seed-0 weak labels of the gold slice (weak_val) and its truth."""
    wl = WeakLabels.load(f"../experiments/results/{task_name}/weak_labels_seed0_weak_val.npz")
    cfg = ExperimentConfig.from_yaml(f"../experiments/configs/{task_name}.yaml")
    truth = dict(zip(experiment_task(cfg).weak_val["id"], experiment_task(cfg).weak_val["label"]))
    return wl, np.array([truth[i] for i in wl.item_ids])


rows, calibrated = [], {}
for task_name, wl, y in [("sst2", sst2, y_sst2), ("agnews", agnews, y_agnews)]:
    gold_wl, gold_y = gold_slice(task_name)
    both = concat(wl, gold_wl)
    n, gold_index = wl.num_items, np.arange(wl.num_items, both.num_items)
    observed = np.concatenate([np.full(n, -1), gold_y])
    for model, method in [("dawid_skene", "em"), ("ebcc", "vb"), ("logistic_t", "em")]:
        plain = fit_posterior(wl, model=model, method=method)
        search = choose_temperature(lambda t: fit_posterior(both, model=model, method=method, temperature=t).item_probs,
                                    gold_index, gold_y)
        post = fit_posterior(both, model=model, method=method, gold=observed, temperature=search.temperature).select(np.arange(n))
        calibrated[task_name, model] = post.item_probs
        for label, probs in [("plain", plain.item_probs), (f"+ gold, T = {search.temperature:.2f}", post.item_probs)]:
            rows.append({"task": task_name, "model": model, "fit": label, "accuracy": round(accuracy(probs, y), 4),
                         "ECE": round(expected_calibration_error(probs, y), 4), "log-loss": round(log_loss(probs, y), 3)})
pd.DataFrame(rows)

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, task_name, y in [(axes[0], "sst2", y_sst2), (axes[1], "agnews", y_agnews)]:
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    for model in ["dawid_skene", "ebcc", "logistic_t"]:
        x, acc = reliability(calibrated[task_name, model], y)
        ax.plot(x, acc, marker="o", label=f"{model} + gold, T")
    ax.set(title=task_name, xlabel="confidence", ylabel="accuracy on held-out truth", xlim=(0.2, 1), ylim=(0.2, 1))
    ax.legend(fontsize=8)
plt.tight_layout()

# %% [markdown]
# Tempering is what calibrates: with T chosen on the 200 gold items, Dawid–Skene's ECE on
# strong_train falls from 12.9% to 0.9% (SST-2) and from 14.7% to 2.8% (AG News) at the
# same accuracy. With three weak models EBCC's subtypes add nothing over Dawid–Skene;
# logistic-t is the most accurate posterior on AG News (86%) and the least on SST-2 without
# gold (81%).
#
# Whether a better posterior also gives a better *student* is measured by the pipeline: see
# the posterior rows of `experiments/results/sst2/results.md` and `experiments/results/agnews/results.md`.

# %% [markdown]
# ## 7. Which model? Ask the gold slice
#
# LOO (section 5) compares models of the *same* observations, so it cannot weigh a vote model
# against one that reads the weak probabilities. The gold slice can: `choose_model` fits each
# candidate with the gold items' classes hidden, gives each its gold-chosen T, and keeps the one
# whose gold-item posteriors have the lowest Brier score (a proper score on classes no fit saw).
# Below, the default candidates (one per regime of the README's "Which model" guide) on seed 0,
# each candidate's targets scored against strong_train's hidden truth beside what the gold slice saw.

# %%
from bayes_w2s import choose_model

choices = []
for task_name, wl, y in [("sst2", sst2, y_sst2), ("agnews", agnews, y_agnews)]:
    gold_wl, gold_y = gold_slice(task_name)
    both = concat(wl, gold_wl)
    search = choose_model(both, np.arange(wl.num_items, both.num_items), gold_y, progress=False)
    table = search.scores[["gold_brier", "dse", "gold_log_loss", "temperature", "gold_accuracy"]].copy()
    table["strong_train accuracy"] = [accuracy(search.item_probs[c][:wl.num_items], y) for c in table.index]
    table.insert(0, "task", task_name)
    table["chosen"] = table.index == search.chosen
    choices.append(table.round(3))
pd.concat(choices)


# %% [markdown]
# On seed 0 the gold slice picks one-coin on soft votes for both tasks. On SST-2 its targets are
# 0.6 points below the logistic-t models' and above Dawid–Skene's; on AG News its Brier score ties the
# logistic-t models' (0.256 each, a gap well inside `dse`) and it is 0.7 points below them: 200 gold
# items cannot tell apart candidates this close. Over three seeds (`experiments/results/posterior_choice/`)
# the choice is above the vote on every seed and 0.2–0.3 points below the best candidate on average.
