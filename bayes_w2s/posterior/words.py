"""Word-level posteriors over aligned weak hypotheses: EM, SVI and NUTS for the models of
:mod:`.word_models`, and the fitted :class:`WordPosterior`.

The weak hypotheses of each item are aligned into a confusion network; all slots of all
items form one flat table (:func:`slot_table`). Every fitter ends in :func:`_summarise`,
which turns draws (EM / delta-SVI: one draw, the MAP) of the reliabilities into slot
posteriors, a consensus target per item, a sequence confidence and ArviZ data.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS, SVI, TraceEnum_ELBO
from pyro.infer.autoguide import AutoDelta, AutoNormal, init_to_value
from torch.distributions import biject_to, constraints
from torch.nn.functional import logsigmoid
from tqdm.auto import tqdm

from ..align.confusion_network import EPS, ConfusionNetwork, align_hypotheses
from ..errors import InvalidInputError, UnknownNameError
from .base import DrawDiagnostics
from .word_models import WORD_MODELS

DTYPE = torch.float64
_DEFAULTS = {"word_reliability": {"reliability_a": 4.0, "reliability_b": 2.0},
             "word_reliability_conf": {"intercept_loc": 0.7, "intercept_scale": 1.5, "slope_scale": 1.0}}


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


def slot_table(hypotheses, model_names=None, item_ids=None) -> SlotTable:
    """Align ``hypotheses[n][m]`` (item ``n``, weak model ``m``) and tabulate the slots.

    An empty hypothesis (no words) is allowed and votes ε in every slot of its item; an
    item whose hypotheses are all empty has no slots and gets an empty consensus.
    """
    hypotheses = list(hypotheses)
    if not hypotheses:
        raise InvalidInputError("no items: the hypotheses are empty")
    m = len(hypotheses[0])
    if m < 2:
        raise InvalidInputError(f"word posteriors need at least 2 weak models, got {m}")
    model_names = list(model_names) if model_names is not None else [f"weak{i}" for i in range(m)]
    if len(model_names) != m:
        raise InvalidInputError(f"{len(model_names)} model names for {m} hypotheses per item")
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
    with warnings.catch_warnings():       # a model without scores has an all-NaN column
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, sd = np.nanmean(raw, 0), np.nanstd(raw, 0)
    mean = np.nan_to_num(mean)
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    feature = np.nan_to_num((raw - mean) / sd, nan=0.0)
    noise_logprob, noise_rest = _unigram_noise(cands, choice)
    return SlotTable(networks, np.array(rows, dtype=np.int64), cands, choice, feature, model_names,
                     list(item_ids) if item_ids is not None else None, noise_logprob, noise_rest)


def _unigram_noise(cands: list[list[str]], choice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The error distribution q: add-one unigram frequencies of the words the weak models
    chose (ε counted like a word), with one more share for all unseen words, so q's
    mass off any slot's candidates is positive."""
    counts: dict[str, int] = {}
    for s, row in enumerate(choice):
        for k in row:
            counts[cands[s][k]] = counts.get(cands[s][k], 0) + 1
    total = sum(counts.values()) + len(counts) + 1
    width = max(max((len(c) for c in cands), default=1), 2)
    logq = np.full((len(cands), width), -np.inf)
    rest = np.zeros(len(cands))
    for s, cand in enumerate(cands):
        q = np.array([(counts[w] + 1) / total for w in cand])
        logq[s, :len(cand)] = np.log(q)
        rest[s] = np.log1p(-q.sum())
    return logq, rest


def _tensors(table: SlotTable):
    """``choice, n_cand, onehot [S, M, W], feature, noise_logprob [S, W], noise_rest [S]``."""
    choice = torch.as_tensor(table.choice)
    n_cand = torch.as_tensor(table.n_candidates)
    onehot = torch.nn.functional.one_hot(choice, table.width).to(DTYPE)           # [S, M, W]
    return (choice, n_cand, onehot, torch.as_tensor(table.feature, dtype=DTYPE),
            torch.as_tensor(table.noise_logprob, dtype=DTYPE), torch.as_tensor(table.noise_rest, dtype=DTYPE))


def log_reliability(model: str, g: dict, feature: torch.Tensor):
    """``(log r, log(1 − r))`` broadcastable to ``[..., S, M]`` for globals ``g``."""
    if model == "word_reliability":
        r = g["reliability"].unsqueeze(-2)                                         # [..., 1, M]
        return r.log(), torch.log1p(-r)
    eta = g["intercept"].unsqueeze(-2) + g["slope"].unsqueeze(-2) * feature         # [..., S, M]
    return logsigmoid(eta), logsigmoid(-eta)


def _branches(onehot: torch.Tensor, noise_logprob: torch.Tensor, log_r: torch.Tensor, log_not_r: torch.Tensor):
    """``[..., S, M]`` log p(y_sm | w_s ≠ y_sm) = log(1 − r) + log q(y) ("err") and
    log p(y_sm | w_s = y_sm) = log(r + (1 − r) q(y)) ("hit")."""
    noise_of_choice = torch.einsum("smw,sw->sm", onehot, noise_logprob.clamp_min(-1e30))
    err = log_not_r + noise_of_choice
    return err, torch.logaddexp(log_r.expand_as(err), err)


def slot_log_joint(onehot: torch.Tensor, n_cand: torch.Tensor, noise_logprob: torch.Tensor, log_r: torch.Tensor,
                   log_not_r: torch.Tensor) -> torch.Tensor:
    """``[..., S, W]`` log p(w_s = k) + Σ_m log p(y_sm | w_s = k) (−∞ for k ≥ K_s)."""
    width = onehot.shape[-1]
    err, hit = _branches(onehot, noise_logprob, log_r, log_not_r)
    agree = torch.einsum("...sm,smw->...sw", hit - err, onehot)
    joint = err.sum(-1, keepdim=True) + agree - n_cand.to(DTYPE).log().unsqueeze(-1)
    return joint.masked_fill(torch.arange(width) >= n_cand.unsqueeze(-1), float("-inf"))


def model_priors(model: str, priors: dict) -> dict:
    if model not in WORD_MODELS:
        raise UnknownNameError(f"unknown word posterior model {model!r}; available: {sorted(WORD_MODELS)}")
    unknown = set(priors) - set(_DEFAULTS[model])
    if unknown:
        raise InvalidInputError(f"{model} has no prior(s) {sorted(unknown)}; it takes {sorted(_DEFAULTS[model])}")
    return {**_DEFAULTS[model], **priors}


def log_prior(model: str, g: dict, p: dict) -> torch.Tensor:
    if model == "word_reliability":
        beta = torch.distributions.Beta(torch.tensor(p["reliability_a"], dtype=DTYPE),
                                        torch.tensor(p["reliability_b"], dtype=DTYPE))
        return beta.log_prob(g["reliability"]).sum(-1)
    a = torch.distributions.Normal(torch.tensor(p["intercept_loc"], dtype=DTYPE),
                                   torch.tensor(p["intercept_scale"], dtype=DTYPE))
    b = torch.distributions.Normal(torch.tensor(0.0, dtype=DTYPE), torch.tensor(p["slope_scale"], dtype=DTYPE))
    return a.log_prob(g["intercept"]).sum(-1) + b.log_prob(g["slope"]).sum(-1)


# -- the fitted posterior ----------------------------------------------------------------

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

    @property
    def model_names(self) -> list[str]:
        return self.table.model_names

    def _slots_of(self, n: int) -> np.ndarray:
        return np.flatnonzero(self.table.item_of_slot == n)

    def word_posteriors(self, n: int) -> list[dict[str, float]]:
        """Item ``n``: per slot, ``{candidate word: posterior probability}`` (ε is ``""``)."""
        return [dict(zip(self.table.candidates[s], self.slot_probs[s, :len(self.table.candidates[s])].tolist()))
                for s in self._slots_of(n)]

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
        if num_samples < 1:
            raise InvalidInputError(f"num_samples must be ≥ 1, got {num_samples}")
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

        coords = {"weak_model": list(self.model_names), "item": np.arange(self.table.num_items)}
        posterior = {name: value for name, value in self.draws.items()}
        dims = {name: ["weak_model"] for name in posterior}
        return az.from_dict(posterior=posterior, log_likelihood={"y": self.log_lik},
                            sample_stats=dict(self.sample_stats) or None, coords=coords,
                            dims={**dims, "y": ["item"]},
                            attrs={"model": self.model, "method": self.method, "inference_library": "pyro"})

    def __repr__(self) -> str:
        return (f"WordPosterior(model={self.model!r}, method={self.method!r}, items={self.table.num_items}, "
                f"slots={len(self.table.candidates)}, M={len(self.model_names)})")


def _summarise(table: SlotTable, model: str, method: str, draws: dict, **extra) -> WordPosterior:
    """Slot posteriors (Rao-Blackwellised over draws), reliabilities and per-item log-lik."""
    _, n_cand, onehot, feature, noise, _ = _tensors(table)
    with torch.no_grad():
        log_r, log_not_r = log_reliability(model, draws, feature)                  # [C, D, S|1, M]
        joint = slot_log_joint(onehot, n_cand, noise, log_r, log_not_r)            # [C, D, S, W]
        slot_ll = torch.logsumexp(joint, -1)                                        # [C, D, S]
        probs = (joint - slot_ll.unsqueeze(-1)).exp().mean((0, 1))
        r = log_r.exp().expand(*log_r.shape[:-2], len(table.candidates), log_r.shape[-1]).mean(-2)   # [C, D, M]
    log_lik = np.zeros(slot_ll.shape[:2] + (table.num_items,))
    np.add.at(log_lik, (slice(None), slice(None), table.item_of_slot), slot_ll.numpy())
    r = r.reshape(-1, r.shape[-1]).numpy()
    return WordPosterior(table=table, slot_probs=probs.numpy(), reliability=r.mean(0),
                         reliability_sd=r.std(0) if len(r) > 1 else None, model=model, method=method,
                         draws={s: v.numpy() for s, v in draws.items()}, log_lik=log_lik, **extra)


def _point(g: dict) -> dict:
    return {s: v.detach().reshape(1, 1, *v.shape) for s, v in g.items()}


# -- EM ----------------------------------------------------------------------------------

def _em_starts(model: str, m: int, p: dict, restarts: bool) -> list[dict]:
    """The symmetric start (every model equally reliable) and, with ``restarts``, one start
    per weak model in which that model is the reliable one. The word models' likelihood has
    "dictator" modes — one model's reliability → 1 and the consensus copies it — so a single
    start ends in whichever mode is nearest; we keep the start with the best log joint."""
    levels = [torch.full((m,), 0.7, dtype=DTYPE)]
    if restarts and m > 1:
        for lead in range(m):
            r = torch.full((m,), 0.5, dtype=DTYPE)
            r[lead] = 0.9
            levels.append(r)
    if model == "word_reliability":
        return [{"reliability": r} for r in levels]
    # the symmetric start sits at the prior's centre, the others at the same levels as above
    return [{"intercept": torch.full((m,), p["intercept_loc"], dtype=DTYPE) if i == 0 else torch.logit(r),
             "slope": torch.zeros(m, dtype=DTYPE)} for i, r in enumerate(levels)]


def _em_from(g: dict, model: str, p: dict, tensors, s_count: int, max_iter: int, tol: float,
             progress: bool) -> tuple[dict, list[float], bool]:
    n_cand, onehot, feature, noise = tensors
    history = []
    for _ in tqdm(range(max_iter), desc=f"EM {model}", disable=not progress, leave=False):
        with torch.no_grad():
            log_r, log_not_r = log_reliability(model, g, feature)
            joint = slot_log_joint(onehot, n_cand, noise, log_r, log_not_r)
            slot_ll = torch.logsumexp(joint, -1)
            history.append(float(slot_ll.sum() + log_prior(model, g, p)))
            q = (joint - slot_ll.unsqueeze(-1)).exp()
            err, hit = _branches(onehot, noise, log_r, log_not_r)
            # E[m copied the true word]: its word is true (q_s) and came from the r branch
            right = torch.einsum("sw,smw->sm", q, onehot) * (log_r - hit).exp()
        if len(history) > 1 and abs(history[-1] - history[-2]) <= tol * (1 + abs(history[-1])):
            return g, history, True
        if model == "word_reliability":
            a, b = p["reliability_a"], p["reliability_b"]
            g = {"reliability": ((a - 1 + right.sum(0)) / (a + b - 2 + s_count)).clamp(1e-6, 1 - 1e-6)}
        else:
            g = _logistic_m_step(g, right, feature, p)
    return g, history, False


def fit_em_words(table: SlotTable, model: str = "word_reliability", *, max_iter: int = 500, tol: float = 1e-9,
                 restarts: bool = True, progress: bool = False, **priors) -> WordPosterior:
    """MAP by EM. E-step: the slot posteriors q_s(w). M-step: for ``word_reliability`` the
    closed form ``r_m = (a − 1 + Σ_s q_s(y_sm)) / (a + b − 2 + S)``; for the confidence
    model a few L-BFGS steps of the q-weighted logistic regression (generalised EM).
    The log joint is recorded per iteration and never decreases.

    With ``restarts`` (default) EM runs from the symmetric start and from one start per weak
    model (that model reliable, the others not) and keeps the run with the highest final
    log joint; ``info["start_log_joints"]`` lists every start's, symmetric first."""
    p = model_priors(model, priors)
    _, n_cand, onehot, feature, noise, _ = _tensors(table)
    s_count, m = table.choice.shape
    runs = [_em_from(g, model, p, (n_cand, onehot, feature, noise), s_count, max_iter, tol, progress)
            for g in _em_starts(model, m, p, restarts)]
    finals = [history[-1] for _, history, _ in runs]
    best = int(np.argmax(finals))
    g, history, converged = runs[best]
    return _summarise(table, model, "em", _point(g), history=history, converged=converged,
                      info={"start_log_joints": finals, "best_start": best})


def _logistic_m_step(g: dict, right: torch.Tensor, feature: torch.Tensor, p: dict, steps: int = 20) -> dict:
    params = {k: v.clone().requires_grad_(True) for k, v in g.items()}
    opt = torch.optim.LBFGS(list(params.values()), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        eta = params["intercept"] + params["slope"] * feature
        loss = -(right * logsigmoid(eta) + (1 - right) * logsigmoid(-eta)).sum() - log_prior("word_reliability_conf",
                                                                                              params, p)
        loss.backward()
        return loss
    opt.step(closure)
    return {k: v.detach() for k, v in params.items()}


# -- SVI ---------------------------------------------------------------------------------

def _model_args(table: SlotTable, model: str):
    choice, n_cand, _, feature, noise, rest = _tensors(table)
    return (choice, n_cand, noise, rest) + (() if model == "word_reliability" else (feature,))


def fit_svi_words(table: SlotTable, model: str = "word_reliability", *, guide: str = "delta", steps: int = 1000,
                  learning_rate: float = 0.02, subsample_size: int | None = None, num_draws: int = 500,
                  seed: int = 0, progress: bool = True, **priors) -> WordPosterior:
    """``TraceEnum_ELBO`` with the true words summed out; ``AutoDelta`` (MAP, the EM optimum)
    or ``AutoNormal`` (spread, ``num_draws`` draws). Starts at the EM fit."""
    if guide not in ("delta", "normal"):
        raise InvalidInputError(f"guide must be 'delta' or 'normal', got {guide!r}")
    p = model_priors(model, priors)
    fn, sites = WORD_MODELS[model]
    start = fit_em_words(table, model, **priors).draws
    init = {s: torch.as_tensor(start[s][0, 0]) for s in sites}
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    auto = (AutoDelta if guide == "delta" else AutoNormal)(poutine.block(fn, expose=list(sites)),
                                                            init_loc_fn=init_to_value(values=init))
    svi = SVI(fn, auto, pyro.optim.ClippedAdam({"lr": learning_rate}), TraceEnum_ELBO(max_plate_nesting=2))
    args = _model_args(table, model)
    history = [svi.step(*args, subsample_size=subsample_size, **p)
               for _ in tqdm(range(steps), desc=f"SVI {model}", disable=not progress, leave=False)]
    with torch.no_grad():
        if guide == "delta":
            draws = _point({s: v for s, v in auto.median(*args, **p).items() if s in sites})
        else:
            samples = [auto(*args, **p) for _ in range(num_draws)]
            draws = {s: torch.stack([d[s] for d in samples]).unsqueeze(0) for s in sites}
    window = history[-max(10, steps // 10):]
    return _summarise(table, model, "svi", draws, history=history,
                      converged=bool(np.std(window) < 0.01 * abs(np.mean(window)) + 1.0),
                      info={"guide": guide, "steps": steps, "subsample_size": subsample_size})


# -- NUTS --------------------------------------------------------------------------------

def make_potential(table: SlotTable, model: str, priors: dict):
    """The negative log joint of the unconstrained globals, true words summed out."""
    p = model_priors(model, priors)
    _, sites = WORD_MODELS[model]
    _, n_cand, onehot, feature, noise, _ = _tensors(table)
    support = {"reliability": constraints.unit_interval, "intercept": constraints.real, "slope": constraints.real}

    def potential(params: dict) -> torch.Tensor:
        g, log_det = {}, 0.0
        for s in sites:
            t = biject_to(support[s])
            g[s] = t(params[s])
            log_det = log_det + t.log_abs_det_jacobian(params[s], g[s]).sum()
        joint = slot_log_joint(onehot, n_cand, noise, *log_reliability(model, g, feature))
        return -(torch.logsumexp(joint, -1).sum() + log_prior(model, g, p) + log_det)
    return potential, support


def fit_nuts_words(table: SlotTable, model: str = "word_reliability", *, num_chains: int = 4,
                   num_samples: int = 500, warmup_steps: int = 300, target_accept_prob: float = 0.8, seed: int = 0,
                   progress: bool = True, **priors) -> WordPosterior:
    """Pyro ``NUTS`` on the globals with the true words summed out, chains run one after
    another from the EM fit (the globals are a few numbers per weak model and the
    potential is over distinct slot rows, so a chain takes seconds)."""
    if num_chains < 1 or num_samples < 1 or warmup_steps < 0:
        raise InvalidInputError("num_chains and num_samples must be ≥ 1 and warmup_steps ≥ 0")
    potential, support = make_potential(table, model, priors)
    _, sites = WORD_MODELS[model]
    start = fit_em_words(table, model, **priors).draws
    init = {s: biject_to(support[s]).inv(torch.as_tensor(start[s][0, 0])) for s in sites}
    chains, diverging = [], []
    started = time.perf_counter()
    for chain in tqdm(range(num_chains), desc=f"NUTS {model}", unit="chain", disable=not progress, leave=False):
        pyro.set_rng_seed(seed + chain)
        mcmc = MCMC(NUTS(potential_fn=potential, target_accept_prob=target_accept_prob), num_samples=num_samples,
                    warmup_steps=warmup_steps, initial_params=init, disable_progbar=True)
        mcmc.run()
        samples = mcmc.get_samples()
        chains.append({s: biject_to(support[s])(samples[s]) for s in sites})
        div = np.zeros(num_samples, dtype=bool)
        for idx in mcmc.diagnostics().get("divergences", {}).values():
            div[[i for i in idx if i < num_samples]] = True
        diverging.append(div)
    draws = {s: torch.stack([c[s] for c in chains]) for s in sites}
    return _summarise(table, model, "nuts", draws, sample_stats={"diverging": np.stack(diverging)},
                      info={"num_chains": num_chains, "num_samples": num_samples, "warmup_steps": warmup_steps,
                            "sampling_seconds": time.perf_counter() - started})


WORD_FITTERS = {"em": fit_em_words, "svi": fit_svi_words, "nuts": fit_nuts_words}
