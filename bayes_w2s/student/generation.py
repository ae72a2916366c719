"""Strong generation students: SFT on token-level soft targets with per-sequence and
(optionally) per-token weights.

Every generation student — the ceiling on ground truth, students of one weak model, of
all weak models (naive multi-weak), of joint decoding, and of the word posterior —
trains through :class:`TokenSoftSFTTrainer` on rows ``(prompt, completion tokens,
per-token sparse target distribution, sequence weight)``; a hard target is the one-hot
case, where the loss is TRL's completion-only NLL.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from trl import SFTTrainer

from ..align.soft_targets import hard_targets, token_soft_targets
from ..distributed import global_share
from ..errors import InvalidInputError
from ..tasks.base import texts_of
from ..tasks.generation import is_well_formed
from ..training import train_then_merge
from ..weak.generators import CausalLMGenerator, GeneratorConfig, causal_lm_lora, prompt_of, sft_config
from .losses import Evidential

GEN_LOSSES = ("xent", "edl")


@dataclass
class GenerationTargets:
    """Training rows for a generation student (several rows may share a prompt).

    Attributes:
        texts: the utterance of each row (the prompt is built from it).
        targets: the target string of each row (the consensus, for posterior rows).
        word_slots: per row, the word posterior's slots (``[{word: prob}]``, see
            :meth:`WordPosterior.word_posteriors`) to turn into token soft labels with the
            student's tokenizer, or ``None`` (all rows, or one row) for one-hot targets.
        word_paths: per row with ``word_slots``, the word to teacher-force in each slot
            (:meth:`WordPosterior.target_words`), or ``None`` for each slot's most probable.
        weights: ``[rows]`` per-sequence weights (1 = plain SFT).
        token_weighted: weigh each target token by the word posterior's probability of the
            word it belongs to (rows with ``word_slots`` only; others weigh 1).
        source: where the targets came from.
    """

    texts: list[str]
    targets: list[str]
    word_slots: list | None = None
    word_paths: list | None = None
    weights: np.ndarray | None = None
    top_k: int = 8
    source: str = ""
    token_weighted: bool = False

    def __post_init__(self):
        for what, rows in (("texts", self.texts), ("targets", self.targets)):   # a string was one row per character
            if isinstance(rows, str) or not hasattr(rows, "__len__"):
                raise InvalidInputError(f"GenerationTargets {what} must be a list of strings, got "
                                        f"{type(rows).__name__} {rows!r:.60}")
        self.texts, self.targets = list(self.texts), list(self.targets)
        if len(self.texts) != len(self.targets):
            raise InvalidInputError(f"{len(self.targets)} targets for {len(self.texts)} texts")
        if not self.texts:
            raise InvalidInputError("no training rows for the generation student")
        not_text = [i for i, t in enumerate(self.targets) if not isinstance(t, str)]
        if not_text:   # None failed mid-training, in the tokenizer
            raise InvalidInputError(f"{len(not_text)} generation target(s) are not strings, e.g. row {not_text[0]}: "
                                    f"{self.targets[not_text[0]]!r}")
        malformed = [i for i, t in enumerate(self.targets) if not is_well_formed(t)]
        if malformed:   # kept: weak generators' own outputs (weak_all) are what a weak supervisor says
            warnings.warn(f"{len(malformed)} of {len(self.targets)} generation targets are not one JSON object of "
                          f"non-empty slot fillers (e.g. row {malformed[0]}: {self.targets[malformed[0]]!r:.60}); "
                          "they are trained as written (constrain a word posterior with "
                          ".constrain(is_well_formed))", RuntimeWarning, stacklevel=3)
        if self.word_paths is not None and len(self.word_paths) != len(self.texts):
            raise InvalidInputError(f"{len(self.word_paths)} word paths for {len(self.texts)} rows")
        if self.weights is not None:
            try:
                self.weights = np.asarray(self.weights, dtype=float)
            except (TypeError, ValueError):
                raise InvalidInputError(f"sequence weights must be {len(self.texts)} numbers, got "
                                        f"{self.weights!r:.60}") from None
            if self.weights.shape != (len(self.texts),) or not np.isfinite(self.weights).all() \
                    or (self.weights < 0).any():
                raise InvalidInputError(f"sequence weights must be {len(self.texts)} finite values ≥ 0")
        if self.word_slots is not None and len(self.word_slots) != len(self.texts):
            raise InvalidInputError(f"{len(self.word_slots)} word-slot lists for {len(self.texts)} rows")

    def token_rows(self, tokenizer, i: int):
        """Row ``i`` as ``(completion ids, [(token ids, probs)] per id, [weight] per id)`` in
        ``tokenizer``'s tokens."""
        slots = self.word_slots[i] if self.word_slots is not None else None
        if slots is None:
            ids, dist = hard_targets(tokenizer, self.targets[i])
            return ids, dist, [1.0] * len(ids)
        path = self.word_paths[i] if self.word_paths is not None else None
        ids, dist, weights = token_soft_targets(tokenizer, slots, self.top_k, path=path, return_weights=True)
        return ids, dist, weights if self.token_weighted else [1.0] * len(ids)

    def subset(self, index) -> "GenerationTargets":
        """The rows at ``index`` (cross-fitting trains on part of the items)."""
        index = [int(i) for i in np.asarray(index).reshape(-1)]
        if any(not 0 <= i < len(self.texts) for i in index):
            raise InvalidInputError(f"subset: row indices must be in 0..{len(self.texts) - 1}, got "
                                    f"{[i for i in index if not 0 <= i < len(self.texts)][:5]}")
        pick = lambda xs: None if xs is None else [xs[i] for i in index]  # noqa: E731
        with warnings.catch_warnings():   # malformed targets were named once, when these were built
            warnings.simplefilter("ignore", RuntimeWarning)
            return GenerationTargets(pick(self.texts), pick(self.targets), pick(self.word_slots),
                                     pick(self.word_paths), None if self.weights is None else
                                     self.weights[np.asarray(index)], self.top_k, self.source, self.token_weighted)


def posterior_targets(posterior, texts: list[str], soft: bool = True, weighted: bool = False,
                      top_k: int = 8, token_weighted: bool = False) -> GenerationTargets:
    """Targets from a :class:`~bayes_w2s.posterior.WordPosterior`: the consensus (its
    :meth:`~bayes_w2s.posterior.WordPosterior.target_path`, so a posterior constrained to
    well-formed targets teaches well-formed ones), as token soft labels (``soft``) or
    one-hot, weighted by the sequence confidence (``weighted``) and/or per token by the
    posterior probability of the token's word (``token_weighted``)."""
    if token_weighted and not soft:
        raise InvalidInputError("per-token confidence weights come with the soft targets (hard=False)")
    if len(texts) != posterior.table.num_items:
        raise InvalidInputError(f"{len(texts)} texts for a posterior over {posterior.table.num_items} items")
    path = posterior.target_path()
    slots = [posterior.word_posteriors(n) for n in range(len(texts))] if soft else None
    paths = [posterior.target_words(n, path) for n in range(len(texts))] if soft else None
    weights = posterior.sequence_confidence if weighted else None
    return GenerationTargets(list(texts), posterior.consensus, word_slots=slots, word_paths=paths, weights=weights,
                             source=f"{posterior.model}/{posterior.method}{' soft' if soft else ''}", top_k=top_k,
                             token_weighted=token_weighted)


class SoftTokenCollator:
    """Right-pads ``prompt + completion`` ids; targets ``[B, L, K]`` and token weights
    ``[B, L]`` sit at the positions of the tokens they predict (−1 / 0 where there is
    none, e.g. the prompt)."""

    def __init__(self, pad_token_id: int):
        self.pad = pad_token_id

    def __call__(self, rows: list[dict]) -> dict:
        width = max(len(r["input_ids"]) for r in rows)
        k = max(len(ids) for r in rows for ids in r["target_ids"])
        b = len(rows)
        input_ids = torch.full((b, width), self.pad, dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.long)
        target_ids = torch.full((b, width, k), -1, dtype=torch.long)
        target_probs = torch.zeros((b, width, k))
        token_weight = torch.zeros((b, width))
        for i, r in enumerate(rows):
            n, start = len(r["input_ids"]), r["completion_start"]
            input_ids[i, :n] = torch.as_tensor(r["input_ids"])
            mask[i, :n] = 1
            for t, (ids, probs) in enumerate(zip(r["target_ids"], r["target_probs"])):
                target_ids[i, start + t, :len(ids)] = torch.as_tensor(ids)
                target_probs[i, start + t, :len(probs)] = torch.as_tensor(probs)
            tw = r.get("token_weight") or [1.0] * len(r["target_ids"])
            token_weight[i, start:start + len(tw)] = torch.as_tensor(tw)
        return {"input_ids": input_ids, "attention_mask": mask, "target_ids": target_ids,
                "target_probs": target_probs, "token_weight": token_weight,
                "seq_weight": torch.as_tensor([r["weight"] for r in rows])}


class TokenSoftSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose loss takes a *distribution* per completion token and a weight
    per sequence.

    TRL's SFT losses (``nll``, ``dft``) score one label per token and weigh every
    sequence alike; word-posterior targets are distributions over the vocabulary
    (several candidate words survive) and sequences differ in how much the posterior
    trusts them, so ``compute_loss`` is overridden. ``loss="xent"``: per token
    ``−Σ_v q_v log p_θ(v)``; ``loss="edl"``: the evidential loss of
    :class:`~bayes_w2s.student.losses.Evidential` over the vocabulary. Per sequence the
    token losses, each times its token weight (1 unless the targets are token-weighted),
    are averaged over the sequence's tokens; sequences are averaged with their weights.
    """

    def __init__(self, *args, token_loss: str = "xent", evidential: Evidential | None = None, **kwargs):
        if token_loss not in GEN_LOSSES:
            raise InvalidInputError(f"unknown generation loss {token_loss!r}; use one of {GEN_LOSSES}")
        super().__init__(*args, **kwargs)
        self.token_loss = token_loss
        self.evidential = evidential or Evidential()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        target_ids = inputs.pop("target_ids")[:, 1:]
        target_probs = inputs.pop("target_probs")[:, 1:]
        token_weight = inputs.pop("token_weight")[:, 1:].float() if "token_weight" in inputs else 1.0
        weight = inputs.pop("seq_weight").float()
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        logits = outputs.logits[:, :-1].float()
        has = target_probs.sum(-1) > 0                                    # [B, L-1] positions with a target
        if self.token_loss == "xent":
            logp = F.log_softmax(logits, -1).gather(-1, target_ids.clamp_min(0))
            token = -(target_probs * logp).sum(-1)
        else:
            rows = logits[has]
            dense = torch.zeros_like(rows).scatter_add_(-1, target_ids[has].clamp_min(0), target_probs[has])
            progress = self.state.global_step / max(1, self.state.max_steps)
            token = torch.zeros(has.shape, dtype=rows.dtype, device=rows.device)
            token[has] = self.evidential.per_row(rows, dense, progress)
        per_seq = (token * token_weight * has).sum(1) / has.sum(1).clamp_min(1)
        loss = (per_seq * weight).sum() / global_share(weight.sum()).clamp_min(1e-8)   # Σ w of the whole batch under DDP
        return (loss, outputs) if return_outputs else loss


@dataclass
class GenerationStudent:
    """A trained strong generation student (a :class:`CausalLMGenerator` underneath).

    ``save_pretrained(dir)`` writes a plain causal-LM folder (safetensors, tokenizer) whose
    config carries the prompt template (``prompt_template``; the tokenizer has it as its chat
    template) and the student's loss, targets and training settings (``student``);
    ``GenerationStudent.from_pretrained(dir)`` reads it back.
    """

    generator: CausalLMGenerator
    loss: str
    targets: str
    wall_seconds: float = float("nan")
    history: list = field(default_factory=list)

    def generate(self, texts, n_best: int = 1, progress: bool = True, processors=None) -> list[str]:
        """The 1-best target string per text (greedy when ``n_best == 1``); ``processors``
        as for :meth:`CausalLMGenerator.generate` (see :mod:`.decoding`). ``texts``: a list of
        strings or a dataset with a ``text`` column (:func:`~bayes_w2s.tasks.base.texts_of`)."""
        texts = texts_of(texts, "generate")
        return [h[0].text for h in self.generator.generate(texts, n_best=n_best, progress=progress,
                                                           processors=processors)]

    def save_pretrained(self, path) -> Path:
        gen = self.generator
        gen._require_model()
        gen.model.config.student = {"loss": self.loss, "targets": self.targets,
                                    "generator_config": dataclasses.asdict(gen.config)}
        gen.save(path)
        return Path(path)

    @classmethod
    def from_pretrained(cls, path, prefer_offline: bool = True) -> "GenerationStudent":
        """Load what :meth:`save_pretrained` wrote (safetensors only, no remote code)."""
        from transformers import AutoConfig

        path = Path(path)
        if not (path / "config.json").is_file():
            raise InvalidInputError(f"{path} is not a saved generation student (no config.json)")
        meta = getattr(AutoConfig.from_pretrained(path, trust_remote_code=False), "student", None) or {}
        # logging settings only matter while training (report_to: wandb loads where wandb is absent)
        known = {f.name for f in dataclasses.fields(GeneratorConfig)} - {"logging_steps", "report_to", "logging_dir"}
        config = GeneratorConfig(**{k: v for k, v in meta.get("generator_config", {}).items() if k in known})
        gen = CausalLMGenerator(str(path), config, prefer_offline).load(path)
        return cls(gen, meta.get("loss", "xent"), meta.get("targets", ""), history=gen.history)


def train_generation_student(model: str, targets: GenerationTargets, loss: str = "xent", *,
                             config: GeneratorConfig | None = None, seed: int = 0,
                             evidential: dict | None = None, prefer_offline: bool = True) -> GenerationStudent:
    """SFT of a causal LM on (soft) token targets; see :class:`TokenSoftSFTTrainer`."""
    from datasets import Dataset
    from transformers import set_seed

    if loss not in GEN_LOSSES:
        raise InvalidInputError(f"unknown generation loss {loss!r}; use one of {GEN_LOSSES}")
    config = config or GeneratorConfig()
    if config.mode == "head":
        raise InvalidInputError("a generation student trains in mode 'full' or 'lora'")
    gen = CausalLMGenerator(model, config, prefer_offline)
    set_seed(seed)
    tok, lm = gen.build(targets.texts, targets.targets)
    rows = {"input_ids": [], "completion_start": [], "target_ids": [], "target_probs": [], "token_weight": [],
            "weight": []}
    weights = targets.weights if targets.weights is not None else np.ones(len(targets.texts))
    for i, text in enumerate(targets.texts):
        completion, dist, token_weight = targets.token_rows(tok, i)
        prompt = tok(prompt_of(text, gen.prompt_template))["input_ids"]
        keep = max(1, config.max_length - len(prompt))           # truncate the completion, never the prompt
        rows["input_ids"].append(prompt + list(completion)[:keep])
        rows["completion_start"].append(len(prompt))
        rows["target_ids"].append([d[0] for d in dist[:keep]])
        rows["target_probs"].append([d[1] for d in dist[:keep]])
        rows["token_weight"].append(list(token_weight[:keep]))
        rows["weight"].append(float(weights[i]))
    peft_config = causal_lm_lora(config) if config.mode == "lora" else None
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # rows are tokenised here (soft targets must line up with the student's tokens),
        # so TRL's own dataset preparation is skipped
        args = sft_config(config, seed, tmp, dataset_kwargs={"skip_prepare_dataset": True})
        trainer = TokenSoftSFTTrainer(model=lm, args=args, train_dataset=Dataset.from_dict(rows),
                                      processing_class=tok, peft_config=peft_config,
                                      data_collator=SoftTokenCollator(tok.pad_token_id), token_loss=loss,
                                      evidential=Evidential(**(evidential or {})))
        done = train_then_merge(trainer, config.logging_dir)
    gen.model, gen.tokenizer, gen.history = done.model, tok, done.history
    return GenerationStudent(gen, loss, targets.source, time.perf_counter() - start, gen.history)
