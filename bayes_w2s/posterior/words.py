"""Word-level data and results: the table of aligned weak hypotheses that the word
models of :mod:`.models.word_reliability` observe, and the fitted :class:`WordPosterior`.

The weak hypotheses of each item are aligned into a confusion network; all slots of all
items form one flat table (:func:`slot_table`). Inference is the generic EM / SVI / NUTS
of :mod:`.engine`; the word models' ``summarise`` turns draws of the reliabilities into
slot posteriors, a consensus target per item, a sequence confidence and ArviZ data.
"""
from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..align.confusion_network import EPS, ConfusionNetwork, align_hypotheses
from ..errors import InvalidInputError
from .base import DrawDiagnostics

DTYPE = torch.float64

# -- data -----------------------------------------------------------------------------

@dataclass
class SlotTable:
    """All confusion-network slots of all items, one row per slot.

    Attributes:
        networks: the ``N`` confusion networks; ``item_of_slot`` ``[S]`` maps rows to items.
        candidates: per slot, its distinct words (ε = ``""`` included where some model has none).
        choice: ``[S, M]`` index into ``candidates[s]`` of each weak model's word.
        feature: ``[S, M]`` the word's log-probability, standardised per weak model
            (0 for ε and for hypotheses given without scores).
        noise_logprob: ``[S, width]`` log q of each candidate, q being the noise
            distribution of the models' errors (−∞ for padding); ``noise_rest`` ``[S]``
            the log of q's mass on every other word.
        noise_counts: the word frequencies q was built from; feature_stats: the (mean, sd)
            per weak model that standardised ``feature``.
    """

    networks: list[ConfusionNetwork]
    item_of_slot: np.ndarray
    candidates: list[list[str]]
    choice: np.ndarray
    feature: np.ndarray
    model_names: list[str]
    item_ids: list | None = None
    noise_logprob: np.ndarray | None = None
    noise_rest: np.ndarray | None = None
    noise_counts: dict | None = None
    feature_stats: tuple | None = None

    @property
    def n_candidates(self) -> np.ndarray:
        return np.array([len(c) for c in self.candidates], dtype=np.int64)

    @property
    def num_items(self) -> int:
        return len(self.networks)

    @property
    def width(self) -> int:
        return max(int(self.n_candidates.max(initial=1)), 2)


def _as_words(hyp, where: str) -> tuple[list[str], np.ndarray]:
    """A hypothesis given as text, a word list or a ``WordScores`` → (words, word log-probs)."""
    if hasattr(hyp, "words") and hasattr(hyp, "logprobs"):
        return list(hyp.words), np.asarray(hyp.logprobs, dtype=float)
    if isinstance(hyp, str):
        words = hyp.split()
    elif isinstance(hyp, (list, tuple)) and all(isinstance(w, str) for w in hyp):
        words = list(hyp)
    else:
        raise InvalidInputError(f"{where}: a hypothesis must be a string, a list of words or WordScores, "
                                f"got {type(hyp).__name__}")
    return words, np.full(len(words), np.nan)


def _check_word_hypotheses(labels) -> None:
    """Word posteriors take ``[N][M]`` hypotheses (each a string or word scores); a flat list
    of strings or a DataFrame was read character by character, into a silent garbage fit."""
    if isinstance(labels, (str, bytes, dict)) or hasattr(labels, "columns") or not hasattr(labels, "__len__"):
        raise InvalidInputError(f"word hypotheses must be a list with one list of M hypotheses per item, got "
                                f"{type(labels).__name__}")
    for n, item in enumerate(labels):
        if isinstance(item, (str, bytes)) or not isinstance(item, (list, tuple, np.ndarray)):
            raise InvalidInputError(f"word hypotheses: item {n} must be a list of M hypotheses (one per weak "
                                    f"model), got {type(item).__name__} {item!r:.60}")


def slot_table(hypotheses, model_names=None, item_ids=None, noise_counts: dict | None = None,
               feature_stats=None) -> SlotTable:
    """Align ``hypotheses[n][m]`` (item ``n``, weak model ``m``) and tabulate the slots.

    An empty hypothesis (no words) is allowed and votes ε in every slot of its item; an
    item whose hypotheses are all empty has no slots and gets an empty consensus.
    ``noise_counts`` / ``feature_stats`` reuse a fitted table's word frequencies and
    log-prob standardisation, so that a fitted posterior applies to new items unchanged.
    """
    _check_word_hypotheses(hypotheses)
    hypotheses = list(hypotheses)
    if not hypotheses:
        raise InvalidInputError("no items: the hypotheses are empty")
    m = len(hypotheses[0])
    if m < 2:
        raise InvalidInputError(f"word posteriors need at least 2 weak models, got {m}")
    model_names = list(model_names) if model_names is not None else [f"weak{i}" for i in range(m)]
    if len(model_names) != m:
        raise InvalidInputError(f"{len(model_names)} model names for {m} hypotheses per item")
    if item_ids is not None and len(item_ids) != len(hypotheses):
        raise InvalidInputError(f"{len(item_ids)} item_ids for {len(hypotheses)} items")
    networks, rows, cands, choices, scores = [], [], [], [], []
    for n, item in enumerate(hypotheses):
        if len(item) != m:
            raise InvalidInputError(f"item {n} has {len(item)} hypotheses, expected {m} (one per weak model)")
        words, logprobs = zip(*(_as_words(h, f"item {n}, model {j}") for j, h in enumerate(item)))
        cn = align_hypotheses(list(words), list(logprobs))
        networks.append(cn)
        for s, slot in enumerate(cn.words):
            cand = cn.candidates(s)
            rows.append(n)
            cands.append(cand)
            choices.append([cand.index(w) for w in slot])
            scores.append(cn.logprobs[s])
    choice = np.array(choices, dtype=np.int64).reshape(-1, m)
    raw = np.array(scores, dtype=float).reshape(-1, m)
    if feature_stats is None:
        with warnings.catch_warnings():       # a model without scores has an all-NaN column
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, sd = np.nanmean(raw, 0) if len(raw) else np.zeros(m), np.nanstd(raw, 0) if len(raw) else np.ones(m)
        mean = np.nan_to_num(mean)
        sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    else:
        mean, sd = (np.asarray(v, dtype=float) for v in feature_stats)
    feature = np.nan_to_num((raw - mean) / sd, nan=0.0)
    counts = word_counts(cands, choice) if noise_counts is None else dict(noise_counts)
    noise_logprob, noise_rest = _unigram_noise(cands, counts)
    return SlotTable(networks, np.array(rows, dtype=np.int64), cands, choice, feature, model_names,
                     list(item_ids) if item_ids is not None else None, noise_logprob, noise_rest,
                     noise_counts=counts, feature_stats=(mean, sd))


def word_counts(cands: list[list[str]], choice: np.ndarray) -> dict[str, int]:
    """How often the weak models chose each word (ε counted like a word)."""
    counts: dict[str, int] = {}
    for s, row in enumerate(choice):
        for k in row:
            counts[cands[s][k]] = counts.get(cands[s][k], 0) + 1
    return counts


def _unigram_noise(cands: list[list[str]], counts: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The error distribution q: add-one unigram frequencies ``counts`` of the words the
    weak models chose, with one more share for all unseen words, so q's mass off any
    slot's candidates is positive (and a word the counts never saw gets that share)."""
    total = sum(counts.values()) + len(counts) + 1
    width = max(max((len(c) for c in cands), default=1), 2)
    logq = np.full((len(cands), width), -np.inf)
    rest = np.zeros(len(cands))
    for s, cand in enumerate(cands):
        q = np.array([(counts.get(w, 0) + 1) / total for w in cand])
        logq[s, :len(cand)] = np.log(q)
        rest[s] = np.log1p(-min(q.sum(), 1 - 1e-12))
    return logq, rest


def _tensors(table: SlotTable):
    """``choice, n_cand, onehot [S, M, W], feature, noise_logprob [S, W], noise_rest [S]``."""
    choice = torch.as_tensor(table.choice)
    n_cand = torch.as_tensor(table.n_candidates)
    onehot = torch.nn.functional.one_hot(choice, table.width).to(DTYPE)           # [S, M, W]
    return (choice, n_cand, onehot, torch.as_tensor(table.feature, dtype=DTYPE),
            torch.as_tensor(table.noise_logprob, dtype=DTYPE), torch.as_tensor(table.noise_rest, dtype=DTYPE))


def _branches(onehot: torch.Tensor, noise_logprob: torch.Tensor, log_r: torch.Tensor, log_not_r: torch.Tensor):
    """``[..., S, M]`` log p(y_sm | w_s ≠ y_sm) = log(1 − r) + log q(y) ("err") and
    log p(y_sm | w_s = y_sm) = log(r + (1 − r) q(y)) ("hit")."""
    noise_of_choice = torch.einsum("smw,sw->sm", onehot, noise_logprob.clamp_min(-1e30))
    err = log_not_r + noise_of_choice
    return err, torch.logaddexp(log_r.expand_as(err), err)


def slot_log_joint(onehot: torch.Tensor, n_cand: torch.Tensor, noise_logprob: torch.Tensor, log_r: torch.Tensor,
                   log_not_r: torch.Tensor, lik_weight: float = 1.0) -> torch.Tensor:
    """``[..., S, W]`` log p(w_s = k) + Σ_m log p(y_sm | w_s = k) (−∞ for k ≥ K_s); the
    likelihood raised to ``lik_weight`` (a tempered likelihood)."""
    width = onehot.shape[-1]
    err, hit = _branches(onehot, noise_logprob, log_r, log_not_r)
    agree = torch.einsum("...sm,smw->...sw", hit - err, onehot)
    joint = lik_weight * (err.sum(-1, keepdim=True) + agree) - n_cand.to(DTYPE).log().unsqueeze(-1)
    return joint.masked_fill(torch.arange(width) >= n_cand.unsqueeze(-1), float("-inf"))


@dataclass
class WordPosterior(DrawDiagnostics):
    """Posterior over the true word of every confusion-network slot.

    Attributes:
        table: the :class:`SlotTable` that was fitted (networks, candidates, choices).
        slot_probs: ``[S, W]`` posterior probability of each candidate of each slot
            (averaged over draws of the globals when the method gives draws).
        reliability: ``[M]`` each weak model's posterior mean probability of putting the
            true word in a slot (for the confidence model: averaged over its slots).
        reliability_sd: ``[M]`` its posterior sd, or ``None`` (point fits).
        draws: global sites as ``[chains, draws, M]``; log_lik: ``[chains, draws, N]``
            log p(item's words | globals), true words summed out (for LOO).
        valid: optional well-formedness check of a target text (e.g. "parses as slot
            JSON"); see :meth:`target_path`. Set it with :meth:`constrain`.
    """

    table: SlotTable
    slot_probs: np.ndarray
    reliability: np.ndarray
    model: str = "word_reliability"
    method: str = "em"
    reliability_sd: np.ndarray | None = None
    history: list[float] = field(default_factory=list)
    converged: bool = True
    draws: dict = field(default_factory=dict)
    log_lik: np.ndarray | None = None
    sample_stats: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    valid: Callable[[str], bool] | None = None
    priors: dict = field(default_factory=dict)
    temperature: float = 1.0

    @property
    def model_names(self) -> list[str]:
        return self.table.model_names

    def _slots_of(self, n: int) -> np.ndarray:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n < self.table.num_items:
            raise InvalidInputError(f"item {n!r} is not an item position in [0, {self.table.num_items})")
        return np.flatnonzero(self.table.item_of_slot == n)

    def word_posteriors(self, n: int) -> list[dict[str, float]]:
        """Item ``n``: per slot, ``{candidate word: posterior probability}`` (ε is ``""``)."""
        return [dict(zip(self.table.candidates[s], self.slot_probs[s, :len(self.table.candidates[s])].tolist()))
                for s in self._slots_of(n)]

    def predict(self, hypotheses, item_ids=None) -> "WordPosterior":
        """The posterior of new items' words under the fitted reliabilities, with no refit:
        the new hypotheses are aligned and tabulated with the fitted table's noise
        distribution and log-prob standardisation, and every slot's posterior computed at
        the fitted draws of the globals. ``hypotheses`` as for ``fit_posterior`` (a
        ``WeakHypotheses`` or ``hypotheses[n][m]``)."""
        from .engine import Fit
        from .models import get_model

        if hasattr(hypotheses, "word_hypotheses"):
            item_ids = item_ids or hypotheses.ids
            hypotheses = hypotheses.word_hypotheses()
        table = slot_table(hypotheses, self.model_names, item_ids, noise_counts=self.table.noise_counts,
                           feature_stats=self.table.feature_stats)
        model = get_model(self.model)
        data = model.prepare(table, self.priors)
        draws = {s: torch.as_tensor(v) for s, v in self.draws.items()}
        fit = Fit(draws, [], True, {"predicted_from": f"{self.model}/{self.method}"})
        return replace(model.summarise(data, fit, self.method, self.priors, self.temperature), valid=self.valid)

    def constrain(self, valid: Callable[[str], bool] | None) -> "WordPosterior":
        """The same posterior whose consensus must pass ``valid`` (see :meth:`target_path`)."""
        return replace(self, valid=valid)

    def target_path(self) -> np.ndarray:
        """``[S]`` the candidate chosen in every slot: the most probable one; for an item
        whose slot-wise argmax fails :attr:`valid` (word-level voting can mix the pieces
        of a structured target, e.g. a JSON key from one model and its value's closing
        brace from none), the weak model's 1-best that is most probable under the slot
        posteriors and passes ``valid`` (the argmax stays if none does)."""
        best = self.slot_probs.argmax(-1)
        if self.valid is None:
            return best
        log_p = np.log(np.clip(self.slot_probs, 1e-300, 1.0))
        invalid = []
        for n, text in enumerate(self._texts(best)):
            if self.valid(text):
                continue
            slots = self._slots_of(n)
            options = self.table.choice[slots].T                                    # [M, slots of n]
            scores = [log_p[slots, opt].sum() for opt in options]
            for m in np.argsort(scores)[::-1]:
                if self.valid(self._join(slots, options[m])):
                    best[slots] = options[m]
                    break
            else:
                invalid.append((n, text))
        if invalid:
            warnings.warn(f"{len(invalid)} of {self.table.num_items} items have no consensus and no weak model's "
                          f"1-best that passes the constraint (e.g. item {invalid[0][0]}: {invalid[0][1]!r}); they "
                          "keep the slot-wise argmax", RuntimeWarning, stacklevel=2)
        return best

    def _join(self, slots: np.ndarray, chosen: np.ndarray) -> str:
        return " ".join(w for w in (self.table.candidates[s][k] for s, k in zip(slots, chosen)) if w != EPS)

    def _texts(self, path: np.ndarray) -> list[str]:
        out = [[] for _ in range(self.table.num_items)]
        for s, n in enumerate(self.table.item_of_slot):
            word = self.table.candidates[s][path[s]]
            if word != EPS:
                out[n].append(word)
        return [" ".join(words) for words in out]

    def target_words(self, n: int, path: np.ndarray | None = None) -> list[str]:
        """Item ``n``: the chosen word of each slot (ε = ``""``), as :meth:`target_path`."""
        path = self.target_path() if path is None else path
        return [self.table.candidates[s][path[s]] for s in self._slots_of(n)]

    def sample_targets(self, num_samples: int, seed: int = 0) -> list[dict[str, int]]:
        """Per item, ``num_samples`` draws of its true target from the slot posteriors
        (slots independently), as ``{text: count}``. Draws that fail :attr:`valid` are
        dropped; an item left without any counts its consensus ``num_samples`` times."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral) or num_samples < 1:
            raise InvalidInputError(f"num_samples must be an integer ≥ 1, got {num_samples!r}")
        rng = np.random.default_rng(seed)
        cum = np.cumsum(self.slot_probs, -1)
        draws = (rng.random((num_samples, len(cum), 1)) > cum[None]).sum(-1)          # [draws, S]
        draws = np.minimum(draws, self.table.n_candidates[None] - 1)
        out: list[dict[str, int]] = [{} for _ in range(self.table.num_items)]
        for path in draws:
            for n, text in enumerate(self._texts(path)):
                if self.valid is None or self.valid(text):
                    out[n][text] = out[n].get(text, 0) + 1
        consensus = self.consensus
        for n, counts in enumerate(out):
            if not counts:
                counts[consensus[n]] = num_samples
        return out

    @property
    def consensus(self) -> list[str]:
        """Per item, the chosen word of each slot (ε dropped) joined by spaces: the most
        probable words, or the best valid weak hypothesis where those fail :attr:`valid`."""
        return self._texts(self.target_path())

    @property
    def sequence_confidence(self) -> np.ndarray:
        """``[N]`` posterior probability that the consensus is right in every slot (slots are
        independent given the globals); 0 for an item without slots (nothing to learn)."""
        path = self.target_path()
        log_p = np.log(np.clip(self.slot_probs[np.arange(len(path)), path], 1e-300, 1.0))
        out = np.zeros(self.table.num_items)
        np.add.at(out, self.table.item_of_slot, log_p)
        conf = np.exp(out)
        conf[np.bincount(self.table.item_of_slot, minlength=self.table.num_items) == 0] = 0.0
        return conf

    def to_inference_data(self):
        """ArviZ data: posterior (the reliability sites, dim ``weak_model``), per-item
        log-likelihood (for LOO), and sample_stats (NUTS)."""
        import arviz as az

        from .base import _item_coords
        coords = {"weak_model": list(self.model_names),
                  "item": _item_coords(self.table.item_ids, self.table.num_items)}
        posterior = {name: value for name, value in self.draws.items()}
        dims = {name: ["weak_model"] for name in posterior}
        return az.from_dict(posterior=posterior, log_likelihood={"y": self.log_lik},
                            sample_stats=dict(self.sample_stats) or None, coords=coords,
                            dims={**dims, "y": ["item"]},
                            attrs={"model": self.model, "method": self.method, "inference_library": "pyro"})

    def __repr__(self) -> str:
        return (f"WordPosterior(model={self.model!r}, method={self.method!r}, items={self.table.num_items}, "
                f"slots={len(self.table.candidates)}, M={len(self.model_names)})")
