"""Coerce the three accepted label layouts into one count tensor.

``fit_posterior`` accepts a :class:`~bayes_w2s.weak.labels.WeakLabels` (soft
``[N, M, K]``), an int array ``[N, M]`` of hard votes (``-1`` = abstain), or a long
``pandas.DataFrame`` with columns ``task, worker, label`` (crowd-kit's layout; a worker
may label a task more than once). All become ``counts[N, M, K]``: how often weak model
``m`` gave item ``n`` label ``k``.
"""
from __future__ import annotations

import inspect
import os
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InvalidInputError, LabelSetMismatchError
from ..weak.labels import WeakLabels


@dataclass
class LabelMatrix:
    counts: np.ndarray            # [N, M, K] vote counts (float)
    model_names: list[str]
    label_names: list
    item_ids: list | None
    soft: np.ndarray | None = None  # [N, M, K] probabilities when the input was soft
    named: bool = True              # False: the input had no model names (a vote array), ``weak_<j>`` made up
    labels_by_name: bool = False    # True: labels were class names (a long DataFrame); integer gold labels are too


def as_label_matrix(labels, num_classes: int | None = None, label_names=None, min_models: int = 2,
                    allow_unlabelled: bool = False) -> LabelMatrix:
    """``labels`` in any accepted layout → :class:`LabelMatrix`; every malformed input
    raises :class:`~bayes_w2s.errors.InvalidInputError` (or ``LabelSetMismatchError``).
    Fitting needs ``min_models`` = 2 weak models; predicting new items from fitted ones, 1."""
    num_classes = _check_num_classes(num_classes)
    label_names = _check_label_names(label_names)
    if num_classes is not None and label_names is not None and len(label_names) != num_classes:
        raise LabelSetMismatchError(f"{len(label_names)} label names for {num_classes} classes "
                                    f"(num_classes={num_classes}, label_names={label_names})")
    if isinstance(labels, LabelMatrix):
        if label_names is not None and list(label_names) != list(labels.label_names):
            raise LabelSetMismatchError(f"labels are over {labels.label_names}, expected {list(label_names)}")
        out = labels
    elif isinstance(labels, WeakLabels):
        if label_names is not None and list(label_names) != labels.label_names:
            raise LabelSetMismatchError(f"weak labels are over {labels.label_names}, expected {list(label_names)}")
        if num_classes is not None and num_classes != labels.num_classes:
            raise LabelSetMismatchError(f"weak labels are over {labels.num_classes} classes {labels.label_names}, "
                                        f"num_classes={num_classes}")
        n, m, k = labels.probs.shape
        check_memory(n, m, k)
        out = LabelMatrix(_one_hot(labels.votes(), k), labels.model_names, labels.label_names, labels.item_ids,
                          labels.probs)
    elif isinstance(labels, pd.DataFrame):
        out = _from_long(labels, num_classes, label_names)
    else:
        out = _from_votes(_vote_array(labels), num_classes, label_names)
    n, m, k = out.counts.shape
    if m < min_models:
        raise InvalidInputError(f"a posterior over weak supervisors needs at least two weak models, got {m}")
    if k < 2:
        raise InvalidInputError(f"need at least two classes, got {k} ({out.label_names}): every label given is "
                                "the same; name the full class set with label_names= (or num_classes=)")
    unlabelled = np.flatnonzero(out.counts.sum((1, 2)) == 0)
    if unlabelled.size and out.soft is not None and not allow_unlabelled:
        # every weak model's output is tied there (e.g. uniform): a vote model sees no vote, as for new items
        warnings.warn(f"{unlabelled.size} item(s) get no vote: every weak model's output is tied, e.g. uniform "
                      f"(first: {_item_name(out, unlabelled[0])}); vote models give them the class prior, as do the "
                      "soft-label models where every output is uniform", RuntimeWarning, stacklevel=3)
    elif unlabelled.size and not allow_unlabelled:   # new items may have none: their posterior is the class prior
        raise InvalidInputError(f"{unlabelled.size} item(s) have no label from any weak model (first: "
                                f"{_item_name(out, unlabelled[0])}); drop them first")
    return out


#: a weak model whose outputs vary less than this over the items is constant; one whose top
#: probability is this close to 1 on most items gives hard labels (every real weak model here: neither)
CONSTANT_SPREAD, ONE_HOT_GAP, ONE_HOT_SHARE = 1e-9, 1e-6, 0.5


def soft_output_profile(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per weak model of ``probs`` [N, M, K] (a uniform row is no output): whether its outputs are
    the same on every item it labels (at least two), how many of them are one-hot, and how many it labels."""
    labelled = np.ptp(probs, axis=-1) > 0                                         # [N, M]
    constant = np.array([labelled[:, j].sum() >= 2
                         and np.ptp(probs[labelled[:, j], j], axis=0).max() < CONSTANT_SPREAD
                         for j in range(probs.shape[1])], dtype=bool)
    one_hot = ((probs.max(-1) >= 1 - ONE_HOT_GAP) & labelled).sum(0)
    return constant, one_hot, labelled.sum(0)


def check_soft_outputs(lm: LabelMatrix, model: str) -> None:
    """What a soft-label model (it reads each weak model's log-odds) cannot use, before the fit.
    A weak model whose probabilities are the same on every item it labels (a uniform output
    is read as none) is an error: its log-odds have no spread, and the density's scale for
    them runs to 0 and drags the fit with it. One whose outputs are one-hot on most of the items
    it labels is a warning: they carry only a vote, which the model reads as near-certain
    evidence. Both measured in ``experiments/probe_soft_input_checks.py``."""
    if lm.soft is None:
        return
    is_constant, one_hot, labelled = soft_output_profile(lm.soft)
    constant = [str(lm.model_names[j]) for j in np.flatnonzero(is_constant)]
    if constant:
        raise InvalidInputError(f"{model}: weak model(s) {constant} give the same probabilities on every item they "
                                "label: a soft-label model's density collapses onto their zero spread; leave them "
                                "out, or use a vote model (dawid_skene), which reads them as votes")
    hard = [str(lm.model_names[j]) for j in np.flatnonzero(one_hot > ONE_HOT_SHARE * labelled)]
    if hard:
        warnings.warn(f"{model}: weak model(s) {hard} give one-hot probabilities on most items they label: they "
                      "carry only a vote, which a soft-label model reads as near-certain evidence (on planted hard "
                      "labels some soft-label models fell far below the majority vote); a vote model "
                      "(dawid_skene) reads them as votes", RuntimeWarning, stacklevel=3)


def _item_name(lm: LabelMatrix, position: int) -> str:
    return f"item {lm.item_ids[position]!r}" if lm.item_ids is not None else f"index {position}"


def name_axes(lm: LabelMatrix, model_names=None, item_ids=None) -> LabelMatrix:
    """``fit_posterior``'s ``model_names`` / ``item_ids`` for a vote array (which has neither);
    they used to be ignored without a word for class models."""
    if model_names is None and item_ids is None:
        return lm
    if lm.named or lm.item_ids is not None:
        raise InvalidInputError("model_names / item_ids name the axes of a vote array; these labels carry "
                                "their own (WeakLabels / a long DataFrame)")
    n, m, _ = lm.counts.shape
    for what, names, size in (("model_names", model_names, m), ("item_ids", item_ids, n)):
        if names is None:
            continue
        if isinstance(names, (str, bytes)) or not hasattr(names, "__len__") or len(names) != size:
            raise InvalidInputError(f"{what} must be a list of {size} names, got {names!r}")
        if len({str(x) for x in names}) != size:
            raise InvalidInputError(f"{what} must be distinct, got {list(names)}")
    return LabelMatrix(lm.counts, [str(x) for x in model_names] if model_names is not None else lm.model_names,
                       lm.label_names, list(item_ids) if item_ids is not None else None, lm.soft,
                       named=model_names is not None)


# -- the stated class set ------------------------------------------------------------------

def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_num_classes(num_classes):
    if num_classes is None:
        return None
    if not _is_int(num_classes) or num_classes < 2:
        raise InvalidInputError(f"num_classes must be an integer ≥ 2, got {num_classes!r}")
    return int(num_classes)


def _check_label_names(label_names):
    if label_names is None:
        return None
    if isinstance(label_names, (str, bytes)) or not hasattr(label_names, "__iter__"):
        raise InvalidInputError(f"label_names must be a list of class names, got {label_names!r}")
    if isinstance(label_names, (set, frozenset, dict)):   # vote j would get whichever name hashes j-th
        raise InvalidInputError(f"label_names must be ordered (a list: vote j is the j-th name), got {label_names!r}")
    names = [x.item() if isinstance(x, np.generic) else x for x in label_names]
    if any(not isinstance(x, (str, int, np.integer)) or isinstance(x, (bool, np.bool_)) for x in names):
        raise InvalidInputError(f"label_names must be strings or integers, got {names}")
    names = [int(x) if _is_int(x) else x for x in names]
    if len({str(x) for x in names}) != len(names):   # 0 and "0" would be two classes that print alike
        raise InvalidInputError(f"label_names must be distinct, got {names}")
    return names


def _stated_k(num_classes, label_names) -> int | None:
    return num_classes if num_classes is not None else (len(label_names) if label_names is not None else None)


def _check_no_gaps(seen: np.ndarray, k: int, what: str) -> None:
    """With the class set inferred as ``0..max``, every class must occur: one stray
    vote of 5 among 0/1 votes would otherwise make six classes."""
    missing = sorted(set(range(k)) - {int(x) for x in seen})
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", …" if len(missing) > 5 else "")
        raise LabelSetMismatchError(
            f"{what} reach class {k - 1} but class(es) {shown} never occur; state the class set with "
            f"num_classes= or label_names= (a stray {k - 1} would otherwise add {len(missing)} empty class(es))")


# -- memory ------------------------------------------------------------------------------

def available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), or None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def fit_memory_bytes(n: int, m: int, k: int) -> int:
    """A rough peak of a fit: the ``[N, M, K]`` counts and its working copies (float64)
    plus the ``[M, K, K]`` confusion matrices (current value, statistics, prior, posterior)."""
    return 8 * (3 * n * m * k + 4 * m * k * k + k * k)


def check_memory(n: int, m: int, k: int) -> None:
    """Refuse before allocating a fit that cannot fit in memory (say K = 100,000 classes)."""
    need, have = fit_memory_bytes(n, m, k), available_memory()
    if have is not None and need > have:
        raise InvalidInputError(
            f"fitting {n} items × {m} weak models × {k} classes needs about {need / 2**30:.1f} GiB (counts "
            f"[N, M, K] and confusion matrices [M, K, K]), more than the {have / 2**30:.1f} GiB available; "
            "check the class set (num_classes / label_names) or fit fewer items")


def _one_hot(votes: np.ndarray, k: int) -> np.ndarray:
    """``[N, M]`` votes (−1 = abstain) → ``[N, M, K]`` float counts, without a K×K identity."""
    return (votes[..., None] == np.arange(k)).astype(np.float64)   # abstentions (-1) match no class


# -- hard votes ----------------------------------------------------------------------------

def _vote_array(labels) -> np.ndarray:
    """Hard votes as an int array, or a clear error for strings, ragged rows, fractions …"""
    if isinstance(labels, (str, bytes)) or np.isscalar(labels):
        raise InvalidInputError(f"labels must be WeakLabels, an int array [N, M] of votes or a long DataFrame, "
                                f"got {type(labels).__name__} {labels!r}")
    if isinstance(labels, np.ma.MaskedArray):   # masked cells are abstentions (np.asarray drops the mask)
        labels = labels.astype(float).filled(-1)
    try:
        votes = np.asarray(labels)
    except (ValueError, TypeError) as exc:   # numpy refuses ragged nested lists
        raise InvalidInputError(f"hard votes must be a rectangular int array [N, M] (-1 = abstain); "
                                f"rows of different lengths? ({exc})") from None
    if votes.dtype == object:
        votes = np.where(np.equal(votes, None), -1, votes)    # None in a list of lists: an abstention
        flat = votes.ravel()
        if any(isinstance(v, (list, tuple, np.ndarray)) for v in flat):
            raise InvalidInputError("hard votes must be a rectangular int array [N, M] (-1 = abstain); "
                                    "rows have different lengths")
        bad = next((v for v in flat if not (_is_int(v) or isinstance(v, (float, np.floating, bool, np.bool_)))), None)
        if bad is not None:
            raise InvalidInputError(f"hard votes must be integers (-1 = abstain), got {bad!r} "
                                    "(for named labels pass a DataFrame with columns task, worker, label)")
        votes = votes.astype(np.float64)
    if votes.dtype == bool:          # a binary task's votes as booleans: False is class 0, True class 1
        votes = votes.astype(np.int64)
    if votes.dtype.kind not in "iuf":
        raise InvalidInputError(f"hard votes must be integers (-1 = abstain), got dtype {votes.dtype} "
                                "(for named labels pass a DataFrame with columns task, worker, label)")
    if votes.dtype.kind == "f" and votes.ndim == 3:
        raise InvalidInputError(f"a 3-D array {votes.shape} reads as probabilities [N, M, K]: pass "
                                "WeakLabels(probs, model_names, label_names); hard votes are an int array [N, M]")
    if votes.dtype.kind == "f":
        bad = ~np.isfinite(votes) | (votes != np.round(votes))
        if bad.any():
            raise InvalidInputError(f"hard votes must be integers (-1 = abstain), got {float(votes[bad][0]):g} "
                                    f"at index {tuple(int(i) for i in np.argwhere(bad)[0])}")
    return votes


def _from_votes(votes: np.ndarray, num_classes, label_names) -> LabelMatrix:
    if votes.ndim != 2:
        raise InvalidInputError(f"hard votes must be an int array [N, M], got shape {votes.shape}")
    if votes.size == 0:
        raise InvalidInputError(f"hard votes are empty (shape {votes.shape})")
    if (votes < -1).any():
        raise LabelSetMismatchError(f"vote {votes[votes < -1][0].item()} is not a class index (-1 = abstain)")
    k = _stated_k(num_classes, label_names)
    if k is None:
        if votes.max() < 0:
            raise InvalidInputError("every vote is an abstention (-1)")
        k = int(votes.max()) + 1
        if k > votes.size:   # more classes than votes: surely a stray value (and a huge allocation)
            raise LabelSetMismatchError(f"vote {k - 1} implies {k} classes from only {votes.size} votes; "
                                        "state the class set with num_classes= or label_names=")
        _check_no_gaps(np.unique(votes[votes >= 0]), k, "votes")
    elif (votes >= k).any():
        raise LabelSetMismatchError(
            f"vote {votes[votes >= k][0].item()} is outside the class set 0..{k - 1} (-1 = abstain)")
    check_memory(votes.shape[0], votes.shape[1], k)
    names = list(label_names) if label_names is not None else list(range(k))
    return LabelMatrix(_one_hot(votes.astype(np.int64), k), [f"weak_{j}" for j in range(votes.shape[1])], names, None,
                       named=False)


# -- long DataFrame ------------------------------------------------------------------------

def _long_labels(raw: pd.Series, num_classes, label_names) -> tuple[np.ndarray, list]:
    """``(class index per row, -1 for an abstention; class names)`` of a long frame's
    label column: class indices (ints, -1 = abstain) or class names (strings), not both.
    Values are classified once per distinct value, so a million rows cost one factorize."""
    codes, uniques = pd.factorize(raw, use_na_sentinel=True)
    if (codes < 0).any():
        raise InvalidInputError(f"label missing (NaN) at row {int(np.flatnonzero(codes < 0)[0])}; "
                                "use -1 for an abstention")
    values = [int(v) if isinstance(v, (bool, np.bool_)) else v for v in uniques]   # False / True: classes 0 / 1
    is_num = [_is_int(v) or (isinstance(v, (float, np.floating)) and float(v).is_integer()) for v in values]
    is_str = [isinstance(v, str) for v in values]
    other = [v for v, a, b in zip(values, is_num, is_str) if not (a or b)]
    if other:
        raise InvalidInputError(f"label {other[0]!r} is neither a class index (int, -1 = abstain) nor a "
                                "class name (str)")
    if any(is_num) and any(is_str):
        raise LabelSetMismatchError(
            f"labels mix class indices and class names (e.g. {values[is_num.index(True)]!r} and "
            f"{values[is_str.index(True)]!r}); 0 and '0' would become two classes: use one kind")
    if all(is_str):
        names = label_names if label_names is not None else sorted(values)
        if num_classes is not None and len(names) != num_classes:
            raise LabelSetMismatchError(f"labels name {len(names)} classes {names}, num_classes={num_classes}; "
                                        "pass label_names= to state the classes")
        lookup = {v: i for i, v in enumerate(names)}
        unknown = sorted(v for v in values if v not in lookup)
        if unknown:
            raise LabelSetMismatchError(f"labels {unknown} are not in the class set {list(names)}")
        return np.array([lookup[v] for v in values], dtype=np.int64)[codes], list(names)
    ints = np.array([int(v) for v in values], dtype=np.int64)
    if label_names is not None and all(_is_int(x) for x in label_names):   # integer class names, e.g. ratings 1..5
        lookup = {v: i for i, v in enumerate(label_names)}
        unknown = sorted(int(v) for v in ints if v != -1 and int(v) not in lookup)
        if unknown:
            raise LabelSetMismatchError(f"labels {unknown} are not in the class set {list(label_names)}")
        return np.array([lookup.get(int(v), -1) for v in ints], dtype=np.int64)[codes], list(label_names)
    if (ints < -1).any():
        raise LabelSetMismatchError(f"label {int(ints[ints < -1][0])} is not a class index (-1 = abstain)")
    k = _stated_k(num_classes, label_names)
    if k is None:
        if ints.max() < 0:
            raise InvalidInputError("every label is an abstention (-1)")
        k = int(ints.max()) + 1
        if k > len(codes):
            raise LabelSetMismatchError(f"label {k - 1} implies {k} classes from only {len(codes)} labels; "
                                        "state the class set with num_classes= or label_names=")
        _check_no_gaps(ints[ints >= 0], k, "labels")
    elif (ints >= k).any():
        raise LabelSetMismatchError(f"label {int(ints[ints >= k][0])} is outside the class set 0..{k - 1} "
                                    "(-1 = abstain)")
    return ints[codes], list(label_names) if label_names is not None else list(range(k))


def _from_long(df: pd.DataFrame, num_classes, label_names) -> LabelMatrix:
    missing = {"task", "worker", "label"} - set(df.columns)
    if missing:
        raise InvalidInputError(f"long-format labels need columns task, worker, label; missing {sorted(missing)}")
    if df.empty:
        raise InvalidInputError("the label DataFrame is empty")
    for col in ("task", "worker"):
        if df[col].isna().any():
            raise InvalidInputError(f"column {col!r} must not be missing (NaN), first at row "
                                    f"{int(np.flatnonzero(df[col].isna().to_numpy())[0])}")
        # 0 and "0" would be two tasks (or workers) that print, and match gold ids, as one
        seen: dict = {}
        for v in pd.unique(df[col]):
            if str(v) in seen:
                raise InvalidInputError(f"column {col!r} holds {seen[str(v)]!r} and {v!r}: different values that "
                                        "read the same; use one type for the ids")
            seen[str(v)] = v
    if label_names is None and num_classes is None and isinstance(df["label"].dtype, pd.CategoricalDtype):
        # a categorical column declares its class set, used or not (−1 marks an abstention)
        label_names = _check_label_names([c for c in df["label"].cat.categories if not (_is_int(c) and c == -1)])
    l_idx, label_names = _long_labels(df["label"], num_classes, label_names)
    # hash-based factorize + bincount: linear in the number of labels (crowd-kit scale inputs).
    # Tasks and workers are indexed before abstentions are dropped, so an item that only
    # received abstentions is reported, not silently removed.
    t_idx, tasks = pd.factorize(df["task"], sort=True)
    w_idx, workers = pd.factorize(df["worker"], sort=True)
    shape = (len(tasks), len(workers), len(label_names))
    check_memory(*shape)
    keep = l_idx >= 0
    if not keep.all():   # drop abstentions (copies; skipped when there are none)
        t_idx, w_idx, l_idx = t_idx[keep], w_idx[keep], l_idx[keep]
    flat = (t_idx.astype(np.int64) * shape[1] + w_idx) * shape[2] + l_idx
    counts = np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape).astype(np.float64)
    return LabelMatrix(counts, [str(w) for w in workers], list(label_names), list(tasks), labels_by_name=True)


# -- fitting settings ------------------------------------------------------------------------

def _int_at_least(lo):
    def check(v):
        return _is_int(v) and v >= lo
    check.expected = f"an integer ≥ {lo}"
    return check


def _optional(check):
    def opt(v):
        return v is None or check(v)
    opt.expected = f"None or {check.expected}"
    return opt


def _real_in(lo, hi, lo_open=True, hi_open=True):
    def check(v):
        if not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, (bool, np.bool_)):
            return False
        v = float(v)
        return (np.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi))
    check.expected = f"a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    return check


def _is_bool(v):
    return isinstance(v, (bool, np.bool_))


_is_bool.expected = "True or False"


def _one_of(*options):
    def check(v):
        return v in options
    check.expected = f"one of {options}"
    return check


#: the inference settings every fitter may take, and what each must be
SETTINGS = {
    "max_iter": _int_at_least(1), "steps": _int_at_least(1), "num_draws": _int_at_least(1),
    "num_chains": _int_at_least(1), "num_samples": _int_at_least(1), "max_tree_depth": _int_at_least(1),
    "thinning": _int_at_least(1),
    "warmup_steps": _int_at_least(0), "seed": _int_at_least(0), "num_starts": _optional(_int_at_least(1)),
    "subsample_size": _optional(_int_at_least(1)), "num_workers": _optional(_int_at_least(1)),
    "tol": _real_in(0, np.inf), "learning_rate": _real_in(0, np.inf),
    "eps": _real_in(0, 1), "target_accept_prob": _real_in(0, 1), "soft_votes": _optional(_real_in(0, np.inf)),
    # in posterior SDs around the MAP: much further out a chain can start in a label-switched mode
    "init_jitter": _real_in(0, 3, lo_open=False, hi_open=False),
    # a fraction of the adapted step size: at 1 a step could be 0
    "step_size_jitter": _real_in(0, 1, lo_open=False, hi_open=True),
    "trajectory_length": _real_in(0, np.inf), "trajectory_jitter": _real_in(0, 1, lo_open=False, hi_open=True),
    "progress": _is_bool, "draw_labels": _is_bool, "restarts": _is_bool, "precondition": _optional(_is_bool),
    "adapt_metric": _is_bool,
    "guide": _one_of("delta", "normal"), "backend": _one_of("pyro", "numpyro"),
}


def fit_settings(model: str, method: str | None) -> tuple[list[str], list[str]]:
    """``(prior names, setting names)`` that ``fit_posterior(model=, method=)`` accepts:
    the model function's prior defaults, and the fitter's keyword arguments plus the
    model's data settings (e.g. ``eps``)."""
    from .engine import FITTERS
    from .models import get_model

    m = get_model(model)
    method = method or m.methods[0]
    if method not in m.methods:
        from ..errors import UnknownNameError
        raise UnknownNameError(f"posterior model {model!r} has no method {method!r}; available: {list(m.methods)}")
    settings = [n for n, p in inspect.signature(FITTERS[method]).parameters.items()
                if p.kind is p.KEYWORD_ONLY and n != "temperature"]
    return list(m.prior_defaults()), settings + list(m.data_settings)


def check_fit_settings(model: str, method: str | None, kwargs: dict) -> None:
    """Validate ``fit_posterior``'s ``**kwargs`` before any work: every key is a prior of
    the model or a setting of the method, every value of the right type and range
    (prior *ranges* are the model's business; here a prior must be a finite number)."""
    priors, settings = fit_settings(model, method)
    unknown = sorted(set(kwargs) - set(priors) - set(settings))
    if unknown:
        raise InvalidInputError(f"fit_posterior: model {model!r} has no prior or {method} setting named {unknown}; "
                                f"priors: {priors}; {method} settings: {settings}")
    for name, value in kwargs.items():
        if name in priors and name == "prior_counts":
            continue                      # an array; the model's own spec checks it
        if name in priors:
            ok, expected = _real_in(-np.inf, np.inf)(value), "a finite number"
        else:
            check = SETTINGS.get(name)
            if check is None:
                continue
            ok, expected = check(value), check.expected
        if not ok:
            raise InvalidInputError(f"fit_posterior(model={model!r}, method={method!r}): {name} must be "
                                    f"{expected}, got {value!r}")


def _ambiguous_minus_one() -> LabelSetMismatchError:
    return LabelSetMismatchError("gold holds −1, which is both a class name and the usual 'unknown': give gold as "
                                 "a dict {item: label} (labels read by name), and mark unknown items in a Series or "
                                 "array with NaN or a mask")


def _is_minus_one(label) -> bool:
    return str(label).strip() in ("-1", "-1.0")


def _id_key(item) -> str:
    """An item id as gold looks it up: 3, 3.0 and "3" are one task (a float task column)."""
    if isinstance(item, (float, np.floating)) and float(item).is_integer():
        return str(int(item))
    return str(item)


def gold_labels(gold, lm: LabelMatrix) -> np.ndarray | None:
    """``gold`` ({item: label} or an ``[N]`` array with −1, NaN or a mask = unknown) → ``[N]``
    class indices. Where a class is *named* −1 (sentiment −1 / 0 / 1) and the labels are read
    by name (a long frame), −1 is that class in a dict; anywhere else a −1 is refused as
    ambiguous, and a Series or array marks unknown items with NaN or a mask.

    Items are item ids when the labels carry them, else positions (a pandas Series: its index
    names the items, as a dict's keys). Labels are class names or class indices; an integer
    is read the way the labels were: a name where they were names (a long DataFrame, e.g.
    ratings 1..5), else a class index, as a vote is."""
    if gold is None:
        return None
    names = {str(c): j for j, c in enumerate(lm.label_names)}
    integer_names = all(_is_int(c) for c in lm.label_names)   # ratings 1..5: an integer is never an index
    class_minus_one = "-1" in names   # e.g. sentiment −1 / 0 / 1: −1 is a class only where gold can say so
    if isinstance(gold, pd.Series):   # by index, never by position: a shuffled Series would be misread
        known = gold[gold.notna()]
        if class_minus_one and any(_is_minus_one(v) for v in known):   # as in an array (``df.gold.fillna(-1)``)
            raise _ambiguous_minus_one()
        twice = known.index[known.index.duplicated()]
        if len(twice):
            raise InvalidInputError(f"gold names item {twice.tolist()[0]!r} more than once "
                                    f"(labels {known.loc[[twice[0]]].tolist()}); give one label per item")
        gold = dict(known.items())
    n, k = lm.counts.shape[0], len(lm.label_names)
    out = np.full(n, -1, dtype=np.int64)
    if isinstance(gold, dict):
        if not gold:
            return None
        position = {_id_key(i): j for j, i in enumerate(lm.item_ids)} if lm.item_ids is not None else None
        items = list(gold.items())
        if class_minus_one and not lm.labels_by_name and any(_is_minus_one(v) for _, v in items):
            raise _ambiguous_minus_one()   # votes are class indices, so −1 would be "unknown", yet a class is named −1
    else:
        masked = np.ma.getmaskarray(gold) if isinstance(gold, np.ma.MaskedArray) else None   # masked = unknown
        arr = np.asarray(np.ma.getdata(gold))
        if arr.dtype == bool:   # a mask of gold items, or binary labels? Ambiguous: name the labels
            raise InvalidInputError("gold as a boolean array is ambiguous (a mask of gold items, or the classes "
                                    "0 / 1?): give the labels, {item: label} or an int array with −1 for unknown")
        if arr.shape != (n,):
            raise InvalidInputError(f"gold must be a dict {{item: label}} or an array of {n} labels (−1 = unknown), "
                                    f"got shape {arr.shape}")
        unknown = masked if masked is not None else np.zeros(n, dtype=bool)
        if arr.dtype.kind == "f":    # a float column (pandas with gaps): NaN is unknown too, whole numbers are indices
            unknown = unknown | np.isnan(arr)
            bad = ~unknown & ~(np.isfinite(arr) & (arr == np.round(arr)))
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise LabelSetMismatchError(f"gold label {float(arr[j])!r} of item {j} is not a class index 0..{k - 1}")
            arr = np.where(unknown, -1, arr).astype(np.int64)
        if class_minus_one and np.any((arr == -1) & ~unknown):
            raise _ambiguous_minus_one()
        position, items = None, [(j, v) for j, v in enumerate(arr.tolist()) if v != -1 and not unknown[j]]
    for item, label in items:
        if (_is_int(label) and int(label) == -1 and not class_minus_one) \
                or (isinstance(label, (float, np.floating)) and np.isnan(label)):
            continue                         # unknown, as −1 / NaN in a gold array
        if position is not None:           # the items have ids: gold names them by id, never by position
            if _id_key(item) not in position:
                raise InvalidInputError(f"gold item {item!r} is not among the {n} items' ids")
            j = position[_id_key(item)]
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool) and 0 <= item < n:
            j = int(item)
        else:
            raise InvalidInputError(f"gold item {item!r} is not among the {n} items (positions 0..{n - 1})")
        if isinstance(label, (bool, np.bool_)):
            if str(bool(label)) in names:    # classes named "True" / "False": by name, whatever their order
                label = str(bool(label))
            elif lm.labels_by_name and integer_names:
                raise LabelSetMismatchError(f"gold label {label!r} of item {item!r}: the classes are named "
                                            f"{list(lm.label_names)}; give the class name, not a boolean")
            else:
                label = int(label)           # True / False: the classes 1 / 0, as boolean votes
        if isinstance(label, (float, np.floating)) and float(label).is_integer():
            label = int(label)               # 1.0 from a float column, as in a gold array
        by_name = lm.labels_by_name and str(label) in names
        if isinstance(label, (int, np.integer)) and not by_name and lm.labels_by_name and integer_names:
            raise LabelSetMismatchError(f"gold label {label!r} of item {item!r} is not in the class set "
                                        f"{list(lm.label_names)} (the classes are named by integers, so an "
                                        "integer label is a name, not a class index)")
        if isinstance(label, (int, np.integer)) and not isinstance(label, (bool, np.bool_)) and not by_name:
            if not 0 <= label < k:
                raise LabelSetMismatchError(f"gold label {label!r} of item {item!r} is not a class index 0..{k - 1}")
            out[j] = int(label)
        elif str(label) in names:
            out[j] = names[str(label)]
        else:
            raise LabelSetMismatchError(f"gold label {label!r} of item {item!r} is not in the class set "
                                        f"{list(lm.label_names)}")
    return out
