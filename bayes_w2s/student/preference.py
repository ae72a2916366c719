"""Preference learning for generation students: DPO and conservative DPO on the student's
own candidates, ranked by the weak supervisors.

1. The SFT student writes an N-best list per strong_train prompt (:func:`student_candidates`).
2. The candidates are ranked, either as in Cui et al. (2025, §4.3) by the weak ensemble's
   weighted mean token log-probability, each weak model with its own tokenizer
   (:meth:`GenerationEnsemble.score_candidates`), or by their expected utility (SLU-F1)
   under the word posterior (:func:`posterior_utilities`).
3. Chosen = best, rejected = worst (or the student's own top candidate); each pair carries
   ``p``, the posterior probability that chosen is better than rejected (:func:`make_pairs`).
4. :class:`ConservativeDPOTrainer` learns the pairs with DPO, conservative DPO with a global
   ε (Mitchell, 2023), conservative DPO with a per-pair ``ε_i = 1 − p_i`` (ours), TRL's
   ``robust`` loss (Chowdhury et al., 2024) or TRL's ``ipo`` loss (Azar et al., 2024);
   optionally pairs with ``p < min_p`` are dropped (:meth:`PreferencePairs.filter`) and the
   chosen completions' NLL is added with weight α (the SFT + DPO mix of RPO, Pang et al., 2024).
   ``best_of_n`` keeps only that NLL: fine-tuning on the ranker's chosen candidates
   (reward-ranked fine-tuning: RAFT, Dong et al., 2023; ReST, Gulcehre et al., 2023), the
   baseline every preference loss should beat.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from trl import DPOConfig, DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from .. import distributed
from ..errors import InvalidInputError
from ..train_config import PREFERENCE_LOSSES, RANKERS, REJECTED, PreferenceConfig  # noqa: F401  (re-exported here)
from ..training import logging_arguments, train_then_merge, training_arguments
from ..weak.generators import GeneratorConfig, causal_lm_lora, prompt_of
from .generation import GenerationStudent

MAX_PAIR_EPSILON = 0.49     # ε_i is clipped below 1/2: at 1/2 a pair carries no preference


# -- pairs -------------------------------------------------------------------------------

@dataclass
class PreferencePairs:
    """One (chosen, rejected) pair per prompt.

    Attributes:
        texts: the utterances (the prompt is built from each).
        chosen, rejected: the best and the worst candidate under the ranker.
        p: ``[pairs]`` posterior probability that chosen is better than rejected.
        source: how the pairs were ranked.
        items: ``[pairs]`` each pair's position in the lists :func:`make_pairs` was given.
    """

    texts: list[str]
    chosen: list[str]
    rejected: list[str]
    p: np.ndarray
    source: str = ""
    items: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.texts)
        if not n:
            raise InvalidInputError("no preference pairs: every item's candidates tied or were identical")
        if len(self.chosen) != n or len(self.rejected) != n:
            raise InvalidInputError(f"{len(self.chosen)} chosen / {len(self.rejected)} rejected for {n} prompts")
        self.p = np.asarray(self.p, dtype=float)
        if self.p.shape != (n,) or not np.isfinite(self.p).all() or (self.p < 0).any() or (self.p > 1).any():
            raise InvalidInputError(f"p must be {n} probabilities in [0, 1]")
        if any(c == r for c, r in zip(self.chosen, self.rejected)):
            raise InvalidInputError("a pair's chosen and rejected completions are identical")

    def filter(self, min_p: float) -> "PreferencePairs":
        """The pairs whose ``p ≥ min_p`` (the posterior is sure enough that chosen is better)."""
        keep = np.flatnonzero(self.p >= min_p)
        if not len(keep):
            raise InvalidInputError(f"no preference pair has p ≥ {min_p} (max p {self.p.max():.3f})")
        pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
        return PreferencePairs(pick(self.texts), pick(self.chosen), pick(self.rejected), self.p[keep], self.source,
                               None if self.items is None else self.items[keep])

    @property
    def epsilon(self) -> np.ndarray:
        """Per-pair label-noise rate ``ε_i = 1 − p_i``, clipped to [0, 0.49]."""
        return np.clip(1.0 - self.p, 0.0, MAX_PAIR_EPSILON)

    def __len__(self) -> int:
        return len(self.texts)


def student_candidates(student: GenerationStudent, texts: list[str], n: int, progress: bool = True,
                       processors=None) -> list[list[str]]:
    """The student's beam-search N-best per text, duplicates removed, best first
    (``processors``: e.g. constrained decoding, :func:`.decoding.slot_processors`)."""
    hyps = student.generator.generate(list(texts), n_best=n, progress=progress, processors=processors)
    return [list(dict.fromkeys(h.text for h in item)) for item in hyps]


def posterior_utilities(posterior, candidates: list[list[str]], utility: Callable[[str, str], float],
                        num_samples: int = 64, seed: int = 0,
                        items: list[int] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per item ``(U, w)``: ``U[k, j]`` = ``utility(candidate k, sampled truth j)`` over the
    distinct draws of the item's true target from the word posterior, ``w[j]`` their
    probabilities. ``U @ w`` is each candidate's expected utility. ``items`` picks the
    posterior's items that ``candidates`` belong to (default: all, in order)."""
    items = list(range(posterior.table.num_items)) if items is None else list(items)
    if len(candidates) != len(items):
        raise InvalidInputError(f"{len(candidates)} candidate lists for {len(items)} posterior items")
    draws_all = posterior.sample_targets(num_samples, seed)
    out = []
    for cands, n in zip(candidates, items):
        draws = draws_all[n]
        truths = list(draws)
        weights = np.array([draws[t] for t in truths], dtype=float)
        out.append((np.array([[utility(c, t) for t in truths] for c in cands]), weights / weights.sum()))
    return out


def reference_scores(candidates: list[list[str]], references: list[str],
                     utility: Callable[[str, str], float]) -> list[np.ndarray]:
    """Each candidate's utility against its item's hidden reference: the oracle ranker, a
    diagnostic of what a perfect ranker would give the same candidates and loss."""
    if len(candidates) != len(references):
        raise InvalidInputError(f"{len(candidates)} candidate lists for {len(references)} references")
    return [np.array([utility(c, ref) for c in cands], dtype=float) for cands, ref in zip(candidates, references)]


def make_pairs(texts: list[str], candidates: list[list[str]], scores: list[np.ndarray],
               utilities: list[tuple[np.ndarray, np.ndarray]], source: str = "",
               rejected: str = "worst") -> PreferencePairs:
    """Chosen = the highest-scoring candidate, rejected = the lowest (``rejected="worst"``)
    or, with ``rejected="top"``, the first candidate (the student's own most likely output)
    wherever it is not the best — best vs worst where it is; ``p`` = posterior probability
    that chosen's utility beats rejected's (ties count one half). Items with one distinct
    candidate or all scores equal give no pair.

    Why ``top``: greedy decoding writes the top candidate, and best-vs-worst pairs mostly
    push down candidates the student would never write, so they can leave its outputs
    unchanged (SLURP, ``experiments/results/slurp_pref_grid_cpu``: DPO on oracle-ranked
    best-vs-worst pairs gives exactly the SFT score)."""
    if rejected not in REJECTED:
        raise InvalidInputError(f"unknown rejected {rejected!r}; use one of {REJECTED}")
    against_top = rejected == "top"
    keep_t, chosen, rejected_out, p, items = [], [], [], [], []
    for i, (text, cands, score, (u, w)) in enumerate(zip(texts, candidates, scores, utilities)):
        score = np.asarray(score, dtype=float)
        if len(cands) < 2 or score.shape != (len(cands),) or np.ptp(score) == 0:
            continue
        best, worst = int(np.argmax(score)), int(np.argmin(score))
        if against_top and best != 0:     # argmax takes the first maximum: the top is strictly worse
            worst = 0
        diff = u[best] - u[worst]
        keep_t.append(text)
        items.append(i)
        chosen.append(cands[best])
        rejected_out.append(cands[worst])
        p.append(float(w @ ((diff > 0) + 0.5 * (diff == 0))))
    return PreferencePairs(keep_t, chosen, rejected_out, np.array(p), source, np.array(items, dtype=np.int64))


# -- trainer -----------------------------------------------------------------------------

def conservative_dpo_loss(margin: torch.Tensor, beta: float, epsilon: torch.Tensor | float) -> torch.Tensor:
    """Per pair ``−(1 − ε) log σ(β h) − ε log σ(−β h)``, ``h`` the policy-minus-reference
    log-ratio margin; ε may be one number or one per pair (ε = 0 is DPO)."""
    return -(1 - epsilon) * F.logsigmoid(beta * margin) - epsilon * F.logsigmoid(-beta * margin)


@dataclass
class PreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator, plus the per-pair ``epsilon`` as a ``[B]`` tensor."""

    def torch_call(self, examples):
        out = super().torch_call(examples)
        if "epsilon" in examples[0]:
            out["epsilon"] = torch.tensor([float(e["epsilon"]) for e in examples], dtype=torch.float32)
        return out


#: our preference losses → TRL's loss_type (the ones TRL computes itself)
TRL_LOSS_TYPES = {"dpo": "sigmoid", "robust": "robust", "ipo": "ipo"}


class ConservativeDPOTrainer(DPOTrainer):
    """``DPOTrainer`` with conservative DPO, global or per pair.

    TRL ≥ 0.29 ignores ``label_smoothing`` in its ``sigmoid`` loss and has no per-pair
    weights, so ``cdpo`` / ``cdpo_pair`` are computed here from the same per-sequence
    log-probs TRL uses (its fused LM head) and the precomputed reference log-probs, plus
    ``sft_weight`` × the chosen completions' mean token NLL (as TRL's ``sft`` loss type,
    which the TRL losses get through ``loss_type=[…, "sft"]`` instead). ``best_of_n`` is that
    NLL alone. ``dpo``, ``robust`` and ``ipo`` are TRL's own ``sigmoid``, ``robust`` and
    ``ipo`` losses, untouched.
    """

    def __init__(self, *args, preference_loss: str = "dpo", sft_weight: float = 0.0, **kwargs):
        if preference_loss not in PREFERENCE_LOSSES:
            raise InvalidInputError(f"unknown preference loss {preference_loss!r}; use one of {PREFERENCE_LOSSES}")
        self.preference_loss = preference_loss
        self.sft_weight = sft_weight
        super().__init__(*args, **kwargs)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if "epsilon" not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, "epsilon"]

    def compute_ref_log_probs(self, model, inputs):
        # TRL passes every non-reference key to the model; ε is ours
        return super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k != "epsilon"})

    def sequence_logps(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Summed completion log-probs ``(chosen [B], rejected [B])`` of the batch, and the
        chosen completions' mean token NLL (a scalar, as TRL's ``sft`` loss)."""
        mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(mask == 0, -100)
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels,
                    use_cache=False, fused_lm_head=True)
        per_token = out.log_probs[:, -(mask.shape[1] - 1):]
        chosen, rejected = per_token.sum(1).chunk(2)
        chosen_mask = mask[:, 1:].chunk(2)[0].bool()
        return chosen, rejected, -per_token.chunk(2)[0][chosen_mask].mean()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        epsilon = inputs.pop("epsilon", None)
        if self.preference_loss in TRL_LOSS_TYPES:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.preference_loss == "best_of_n":
            chosen_nll = self.sequence_logps(model, inputs)[2]
            self._metrics["train" if model.training else "eval"]["nll/chosen"].append(chosen_nll.item())
            return (chosen_nll, None) if return_outputs else chosen_nll
        if self.preference_loss == "cdpo_pair":
            if epsilon is None:
                raise InvalidInputError("cdpo_pair needs a per-pair 'epsilon' column in the dataset")
        else:
            epsilon = self.label_smoothing
        chosen, rejected, chosen_nll = self.sequence_logps(model, inputs)
        margin = (chosen - inputs["ref_chosen_logps"]) - (rejected - inputs["ref_rejected_logps"])
        eps = epsilon.to(margin) if torch.is_tensor(epsilon) else epsilon
        loss = conservative_dpo_loss(margin, self.beta, eps).mean()
        if self.sft_weight:
            loss = loss + self.sft_weight * chosen_nll
        mode = "train" if model.training else "eval"
        self._metrics[mode]["rewards/margins"].append((self.beta * margin).mean().item())
        self._metrics[mode]["rewards/accuracies"].append((margin > 0).float().mean().item())
        return (loss, None) if return_outputs else loss


def dpo_config(config: PreferenceConfig, seed: int, output_dir: str, max_length: int, bf16: bool = False,
               **extra) -> DPOConfig:
    """TRL's ``DPOConfig`` for our settings (:func:`~bayes_w2s.training.training_arguments`):
    reference log-probs precomputed once (the SFT student is the reference), TRL's loss type
    for ``dpo`` / ``robust`` / ``ipo`` (with TRL's ``sft`` term, weight α, for the SFT + DPO
    mix), bf16 only when asked for (TRL turns it on by default)."""
    loss_type, weights = [TRL_LOSS_TYPES.get(config.loss, "sigmoid")], [1.0]
    if config.sft_weight and config.loss in TRL_LOSS_TYPES:
        loss_type, weights = [*loss_type, "sft"], [1.0, config.sft_weight]
    smoothing = config.epsilon if config.loss in ("cdpo", "robust") else 0.0
    return training_arguments(config, seed, output_dir, args_cls=DPOConfig, beta=config.beta, loss_type=loss_type,
                              loss_weights=weights, label_smoothing=smoothing, precompute_ref_log_probs=True,
                              max_length=max_length, bf16=bf16, **extra)


def clone_model(model):
    """A copy of a causal LM with its own weights and the class's own ``forward``. TRL's
    trainers patch ``forward`` on the instance (their fused LM head) with a method bound
    to that instance, so ``copy.deepcopy`` would give a copy that runs the original's
    weights."""
    clone = type(model)(model.config)
    clone.load_state_dict(model.state_dict())
    return clone.to(device=model.device, dtype=model.dtype)


def train_preference(student: GenerationStudent, pairs: PreferencePairs, config: PreferenceConfig | None = None,
                     seed: int = 0) -> GenerationStudent:
    """DPO / conservative DPO of a trained SFT student on ``pairs``; the SFT student is the
    reference policy. Returns a new :class:`GenerationStudent` (the SFT one is untouched)."""
    import copy

    from transformers import set_seed

    config = config or PreferenceConfig()
    gen = copy.copy(student.generator)
    tok, lm = gen.tokenizer, clone_model(student.generator.model).train()
    set_seed(seed)
    rows = {"prompt": [prompt_of(t, gen.prompt_template) for t in pairs.texts], "chosen": [" " + c for c in pairs.chosen],
            "rejected": [" " + r for r in pairs.rejected], "epsilon": pairs.epsilon.tolist()}
    peft_config = causal_lm_lora(config) if config.mode == "lora" else None
    gen_cfg: GeneratorConfig = gen.config
    start = time.perf_counter()
    # the pairs on disk under accelerate launch: TRL caches the reference log-probs next to them
    with tempfile.TemporaryDirectory() as tmp, distributed.shared_dataset(rows) as data:
        # logged like the student's SFT stage (gen_cfg's logging settings)
        args = dpo_config(config, seed, tmp, gen_cfg.max_length, gen_cfg.bf16, **logging_arguments(gen_cfg))
        trainer = ConservativeDPOTrainer(model=lm, args=args, train_dataset=data,
                                         processing_class=tok, peft_config=peft_config,
                                         data_collator=PreferenceCollator(pad_token_id=tok.pad_token_id),
                                         preference_loss=config.loss, sft_weight=config.sft_weight)
        done = train_then_merge(trainer, gen_cfg.logging_dir)
    gen.model, gen.history = done.model, done.history
    return GenerationStudent(gen, config.loss, f"{student.targets} + {config.loss}", time.perf_counter() - start,
                             gen.history)
