"""Posterior targets for a strong student: the gold slice, a gold-chosen temperature, the
strong model in the loop, and CROWDLAB (cleanlab) as the published comparison.

:func:`posterior_targets` fits a posterior over strong_train's weak labels and, when a
gold slice exists, the gold items' weak labels too; the gold items are observed
(``gold="observe"``), turned into a Dawid–Skene prior (``gold="prior"``), and/or used to
choose the likelihood's temperature (``temperature="gold"``); ``posterior:auto`` targets first
choose the posterior model itself there (:func:`~bayes_w2s.posterior.selection.choose_model`).
With ``student_rounds`` the strong student's cross-fitted predictions join as one more
supervisor (:mod:`.loop`). The targets are the posterior over the strong_train items.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from ..posterior import fit_posterior
from ..posterior.calibration import choose_temperature, gold_confusion_counts
from ..posterior.selection import choose_model, parse_candidate
from ..weak.labels import WeakLabels
from .loop import cross_fit, posterior_with_student


@dataclass
class GoldSlice:
    """The gold items: their weak labels and true classes."""

    labels: WeakLabels
    classes: np.ndarray

    def __post_init__(self):
        self.classes = np.asarray(self.classes)
        if len(self.classes) != self.labels.num_items:
            raise InvalidInputError(f"{len(self.classes)} gold classes for {self.labels.num_items} gold items")


def concat(a: WeakLabels, b: WeakLabels) -> WeakLabels:
    """The items of ``a`` followed by those of ``b`` (same weak models and classes)."""
    if a.model_names != b.model_names or a.label_names != b.label_names:
        raise InvalidInputError(f"cannot join weak labels of models {a.model_names} / classes {a.label_names} "
                                f"with {b.model_names} / {b.label_names}")
    ids = None if a.item_ids is None or b.item_ids is None else [*a.item_ids, *b.item_ids]
    return WeakLabels(np.concatenate([a.probs, b.probs]), a.model_names, a.label_names, ids, dict(a.meta))


class StudentLearner:
    """Trains the experiment's strong model on a subset of strong_train (cross-fitting),
    as the method trains its own student (hard or soft targets), and predicts its
    held-out items and the gold items."""

    def __init__(self, cfg, task, method, seed: int):
        self.cfg, self.task, self.method, self.seed = cfg, task, method, seed

    def train(self, index: np.ndarray, targets: np.ndarray):
        from . import train_student
        return train_student(self.cfg.strong_model, self.task.strong_train.select(index), targets, "xent",
                             label_names=self.task.label_names, hard=self.method.hard,
                             config=self.cfg.student_config(self.method), seed=self.seed,
                             prefer_offline=self.cfg.prefer_offline)

    @property
    def groups(self) -> list:
        """strong_train's texts: copies of one text share a cross-fitting fold."""
        return list(self.task.strong_train["text"])

    @property
    def extra_groups(self) -> list | None:
        """The gold items' texts: a gold item whose text strong_train repeats is predicted by the
        fold model that held the copy out."""
        return None if self.task.weak_val is None else list(self.task.weak_val["text"])

    def predict(self, student, index: np.ndarray | None) -> np.ndarray:
        data = self.task.weak_val if index is None else self.task.strong_train.select(index)
        return student.predict_proba(data)


def posterior_targets(method, wl_train: WeakLabels, gold: GoldSlice | None, learner: StudentLearner | None,
                      seed: int = 0):
    """The posterior a method's student learns from (see the module docstring); its ``info``
    records the chosen temperature, the loop rounds and, for ``posterior:auto``, the chosen
    model with every candidate's scores."""
    spec = method.spec
    auto = method.chooses_posterior
    n = wl_train.num_items
    if auto and gold is None:
        raise InvalidInputError(f"method {method.name!r}: posterior:auto chooses the posterior on the gold slice "
                                "(weak_val_size), and there is none")
    uses_gold = gold is not None and (method.gold == "observe" or method.temperature == "gold" or auto)
    labels = concat(wl_train, gold.labels) if uses_gold else wl_train
    gold_index = np.arange(n, labels.num_items) if uses_gold else np.arange(0)
    model, model_method, kwargs = spec.name, spec.method, dict(method.posterior_kwargs)
    choice = None
    if auto:   # the gold classes hidden, as for the temperature; chosen once, before any loop round
        choice = _model_choice(labels, gold_index, gold.classes, tuple(method.candidates), method.temperature,
                               method.posterior_jobs)
        model, model_method, kwargs = parse_candidate(choice.chosen)
    if method.gold == "prior":
        if gold is None:
            raise InvalidInputError(f"method {method.name!r}: gold: prior needs a gold slice (weak_val_size)")
        kwargs["prior_counts"] = gold_confusion_counts(gold.labels, gold.classes, len(wl_train.label_names))
    observed = None
    if method.gold == "observe":
        observed = np.full(labels.num_items, -1)
        observed[gold_index] = gold.classes

    def fit(supervisors: WeakLabels):
        temperature, search = method.temperature, None
        if temperature == "gold" and choice is not None and supervisors is labels:
            temperature = choice.temperature   # choose_model already searched T on this very fit
        elif temperature == "gold":          # the gold items' weak labels seen, their classes hidden
            hidden = fit_posterior(supervisors, model=model, method=model_method, **kwargs)
            search = choose_temperature(lambda t: hidden.predict_proba(supervisors, temperature=t), gold_index,
                                        gold.classes)
            temperature = search.temperature
        post = fit_posterior(supervisors, model=model, method=model_method, gold=observed,
                             temperature=temperature, **kwargs)
        post.info["temperature_chosen"] = temperature
        if choice is not None:
            post.info.update(posterior_chosen=choice.chosen, posterior_choice=choice.scores)
        if search is not None:
            post.info["temperature_search"] = search
        return post

    post = fit(labels)
    if method.student_rounds:
        result = posterior_with_student(fit, post, labels, learner.train, learner.predict,
                                        rounds=method.student_rounds, folds=method.crossfit_folds, seed=seed,
                                        num_train=n, groups=learner.groups, extra_groups=learner.extra_groups)
        post = result.posterior
        post.info["student_rounds"] = method.student_rounds
    return post.select(np.arange(n)) if labels.num_items > n else post


_CHOICES: dict = {}   # the last choice made: the rows of a seed that share labels and candidates share it


def _model_choice(labels: WeakLabels, gold_index: np.ndarray, gold_classes: np.ndarray, candidates: tuple,
                  temperature, n_jobs: int = 1):
    """:func:`~bayes_w2s.posterior.selection.choose_model`, once per distinct input: every
    ``posterior:auto`` row of a seed (plain, EDL, in the loop) asks the same question, and on
    many classes the logistic-t candidates take minutes to answer it (``n_jobs`` changes how fast,
    not what, so it is not part of the key)."""
    digest = hashlib.sha256()
    for part in (labels.probs, gold_index, gold_classes):
        digest.update(np.ascontiguousarray(part).tobytes())
    key = (digest.hexdigest(), tuple(labels.model_names), tuple(map(str, labels.label_names)), candidates,
           str(temperature))
    if key not in _CHOICES:
        _CHOICES.clear()
        _CHOICES[key] = choose_model(labels, gold_index, gold_classes, list(candidates), temperature=temperature,
                                     n_jobs=n_jobs, progress=False)
    return _CHOICES[key]


def crowdlab_targets(wl_train: WeakLabels, learner: StudentLearner, folds: int = 5, seed: int = 0):
    """CROWDLAB (Goh, Tkachenko & Mueller, 2022; cleanlab ≥ 2.9
    ``get_label_quality_multiannotator``) on the same inputs as the student-in-the-loop
    posterior: the weak models' votes and the strong model's out-of-fold probabilities
    from a student trained on the majority vote. Returns ``(one-hot consensus labels,
    consensus quality scores)``: cleanlab's documented outputs, the labels as targets and
    the scores as item weights."""
    try:
        from cleanlab.multiannotator import get_label_quality_multiannotator
    except ImportError as exc:
        raise InvalidInputError("targets: crowdlab needs cleanlab: pip install 'bayes_w2s[crowdlab]'") from exc

    votes = wl_train.votes().astype(float)
    if (votes < 0).all(-1).any():
        raise InvalidInputError(f"targets: crowdlab needs a vote from some weak model on every item; on "
                                f"{int((votes < 0).all(-1).sum())} item(s) every weak model's output is tied")
    votes[votes < 0] = np.nan   # a tied output is no vote; cleanlab reads NaN as "did not label"
    n = wl_train.num_items
    vote = wl_train.majority_vote()
    oof, _ = cross_fit(lambda idx: learner.train(idx, vote[idx]), learner.predict, n, folds, seed,
                       groups=learner.groups)
    result = get_label_quality_multiannotator(votes, oof, verbose=False)
    quality = result["label_quality"]
    labels = quality["consensus_label"].to_numpy().astype(int)
    return np.eye(wl_train.num_classes)[labels], quality["consensus_quality_score"].to_numpy(dtype=float)
