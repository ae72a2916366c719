"""Weak generators for slot filling, each with its own tokenizer.

* :class:`CausalLMGenerator` — a decoder fine-tuned (TRL ``SFTTrainer``, loss on the
  completion only) to continue ``"<utterance>\\nslots:"`` with ``" <JSON target>"``; a
  pretrained card (SmolLM2, Gemma-3 …) or a ``scratch`` card (a small GPT-2 trained from
  random initialisation with a byte-level BPE trained on the same data).
  Hypotheses come from beam search, scored per token, and go through the word bridge.
* :class:`TaggerGenerator` — an encoder (MiniLM, MPNet) with a BIO token-classification
  head; its per-word tag distributions give a k-best list of tag sequences, each
  rendered into the JSON target with word log-probabilities.

Every generator has ``fit(texts, targets)``, ``generate(texts, n_best)`` → per text a
best-first list of :class:`~.hypotheses.Hypothesis`, and ``score(texts, candidates)`` →
each candidate's mean log-prob per token *of this model's own tokenization* (the joint
decoding baseline rescales every weak model's hypotheses with every weak model).
"""
from __future__ import annotations

import heapq
import json
import logging
import tempfile
from pathlib import Path
import numpy as np
import torch
from tqdm.auto import tqdm

from .. import distributed
from ..align.bridge import generated_to_words, tokens_to_words
from ..cards import ModelCard, load_card, resolve_weights
from ..errors import CorruptCacheError, InvalidInputError
from ..io import atomic_dir
from ..tasks.generation import parse_slots, render_slots
from ..train_config import GEN_MODES, GeneratorConfig  # noqa: F401  (re-exported here)
from ..training import lora_config, train_then_merge, training_arguments
from .hypotheses import Hypothesis

log = logging.getLogger(__name__)


#: the causal LMs' prompt (``{text}`` = the utterance); the completion is ``" " + target``
PROMPT_TEMPLATE = "{text}\nslots:"


def prompt_of(text: str, template: str = PROMPT_TEMPLATE) -> str:
    """The prompt for ``text`` (a generator saved with another template passes its own)."""
    return template.replace("{text}", text)


def chat_template(template: str = PROMPT_TEMPLATE) -> str:
    """The prompt template as a tokenizer chat template (Jinja), saved with generation
    students: ``tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False)``
    gives the prompt."""
    return template.replace("{text}", "{{ messages[-1]['content'] }}")


def _check_pairs(texts, targets) -> None:
    if len(texts) == 0:
        raise InvalidInputError("cannot train a generator on an empty dataset")
    if len(texts) != len(targets):
        raise InvalidInputError(f"{len(targets)} targets for {len(texts)} texts")


# -- causal LMs ----------------------------------------------------------------------------

def sft_config(cfg: GeneratorConfig, seed: int, output_dir: str, **extra):
    """TRL's ``SFTConfig`` for our settings (:func:`~bayes_w2s.training.training_arguments`),
    loss on the completion only."""
    from trl import SFTConfig

    return training_arguments(cfg, seed, output_dir, args_cls=SFTConfig, max_length=cfg.max_length,
                              completion_only_loss=True, **extra)


def causal_lm_lora(cfg):
    """The LoRA adapter of a causal LM (weak generators, SFT students, the preference stage)."""
    return lora_config(cfg, task_type="CAUSAL_LM")


def train_bpe_tokenizer(corpus: list[str], vocab_size: int):
    """A byte-level BPE (GPT-2 style) trained on ``corpus`` with ``tokenizers``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   pad_token="<pad>")


class CausalLMGenerator:
    """A decoder that generates the JSON target after the prompt (see module docstring).

    Attributes (after ``fit``): ``model`` (LoRA merged into the weights), ``tokenizer``,
    ``history`` (Trainer log), ``train_seconds``.
    """

    def __init__(self, card: ModelCard | str, config: GeneratorConfig | None = None, prefer_offline: bool = True):
        self.card = load_card(card) if isinstance(card, str) else card
        self.config = config or GeneratorConfig()
        self.prefer_offline = prefer_offline
        self.model = self.tokenizer = None
        self.prompt_template = PROMPT_TEMPLATE
        self.history: list[dict] = []
        self.train_seconds = float("nan")

    def build(self, texts, targets):
        """``(tokenizer, model)`` before training (a scratch card trains its BPE on the pairs)."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        if self.card.scratch:
            spec = dict(self.card.scratch)
            corpus = [prompt_of(t) + " " + y for t, y in zip(texts, targets)]
            tok = train_bpe_tokenizer(corpus, int(spec.pop("vocab_size", 2000)))
            config = AutoConfig.for_model(spec.pop("model_type", "gpt2"), vocab_size=len(tok),
                                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                          pad_token_id=tok.pad_token_id, **spec)
            model = AutoModelForCausalLM.from_config(config)
        else:
            source = resolve_weights(self.card, prefer_offline=self.prefer_offline)
            tok = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(source, trust_remote_code=False, use_safetensors=True,
                                                         dtype=torch.float32)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok, model

    def fit(self, texts: list[str], targets: list[str], seed: int = 0):
        """Fine-tune on (utterance, target) pairs with TRL's ``SFTTrainer`` (completion-only loss)."""
        from datasets import Dataset
        from transformers import set_seed
        from trl import SFTTrainer

        _check_pairs(texts, targets)
        set_seed(seed)
        self.tokenizer, model = self.build(list(texts), list(targets))
        cfg = self.config
        peft_config = None
        if cfg.mode == "lora":
            peft_config = causal_lm_lora(cfg)
        elif cfg.mode == "head":
            raise InvalidInputError("mode 'head' is for taggers; a causal LM generator trains 'full' or 'lora'")
        data = {"prompt": [prompt_of(t) for t in texts], "completion": [" " + y for y in targets]}
        with tempfile.TemporaryDirectory() as tmp:
            trainer = SFTTrainer(model=model, args=sft_config(cfg, seed, tmp), train_dataset=Dataset.from_dict(data),
                                 processing_class=self.tokenizer, peft_config=peft_config)
            done = train_then_merge(trainer, cfg.logging_dir)
        self.model, self.history, self.train_seconds = done.model, done.history, done.train_seconds
        return self

    def _require_model(self):
        if self.model is None:
            raise InvalidInputError("the generator is not trained yet: call fit() first")

    def save(self, path) -> None:
        """The trained model (safetensors), tokenizer and training log in folder ``path``,
        written to a temporary folder first so a crash never leaves a half-written one. The
        prompt template goes into the model config (``prompt_template``) and the tokenizer
        (as its chat template)."""
        self._require_model()
        path = Path(path)
        self.model.config.prompt_template = self.prompt_template
        self.tokenizer.chat_template = chat_template(self.prompt_template)
        with atomic_dir(path) as tmp:   # per-process temp folder: concurrent writers never collide
            self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            (tmp / "history.json").write_text(json.dumps(self.history, default=str))

    def load(self, path) -> "CausalLMGenerator":
        """Load what :meth:`save` wrote (safetensors only, no remote code)."""
        from safetensors import SafetensorError
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
            self.model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=False, use_safetensors=True,
                                                              dtype=torch.float32).eval().to(distributed.device())
            self.history = json.loads((path / "history.json").read_text())
            self.prompt_template = getattr(self.model.config, "prompt_template", PROMPT_TEMPLATE)
        except (OSError, ValueError, SafetensorError) as err:
            raise CorruptCacheError(f"cannot load the saved generator {path} ({err}); delete it") from err
        return self

    @torch.inference_mode()
    def generate(self, texts: list[str], n_best: int | None = None, progress: bool = True,
                 processors=None) -> list[list[Hypothesis]]:
        """Beam search (greedy when ``n_best == 1``); per text the ``n_best`` hypotheses,
        best first, with word log-probs from the word bridge. ``processors(items,
        prompt_width, num_beams)``, if given, returns the ``LogitsProcessor`` list for a
        batch of the texts at positions ``items`` (e.g. constrained decoding,
        :func:`bayes_w2s.student.decoding.slot_processors`)."""
        from transformers import LogitsProcessorList

        self._require_model()
        n_best = n_best or self.config.n_best
        tok, cfg = self.tokenizer, self.config
        tok.padding_side = "left"
        prompts = [prompt_of(t, self.prompt_template) for t in texts]
        order = np.argsort([len(p) for p in prompts], kind="stable")
        out: list[list[Hypothesis]] = [None] * len(texts)       # type: ignore[list-item]
        bs = max(1, cfg.eval_batch_size // n_best)
        batches = [order[start:start + bs] for start in range(0, len(order), bs)]
        for idx in tqdm(distributed.shard(batches), desc=f"generate {self.card.name}",   # this rank's batches
                        disable=not progress or not distributed.is_main(), leave=False):
            enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True).to(self.model.device)
            extra = processors(idx, enc["input_ids"].shape[1], n_best) if processors is not None else []
            # use_cache explicitly: TRL's DPOTrainer leaves generation_config.use_cache False on the
            # model it trained, and decoding without the KV cache was ~6x slower per batch here
            gen = self.model.generate(**enc, max_new_tokens=cfg.max_new_tokens, num_beams=n_best,
                                      num_return_sequences=n_best, do_sample=False, early_stopping=True,
                                      output_scores=True, return_dict_in_generate=True, use_cache=True,
                                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                      logits_processor=LogitsProcessorList(extra))
            beams = getattr(gen, "beam_indices", None) if n_best > 1 else None
            steps = self.model.compute_transition_scores(gen.sequences, gen.scores, beams,
                                                         normalize_logits=n_best == 1)
            new = gen.sequences[:, enc["input_ids"].shape[1]:]
            for row in range(len(idx) * n_best):
                ids, lps = [], []
                for t, lp in zip(new[row].tolist(), steps[row].tolist()):
                    if t == tok.pad_token_id and t != tok.eos_token_id:
                        break
                    ids.append(t)
                    lps.append(lp)
                    if t == tok.eos_token_id:
                        break
                scores = generated_to_words(tok, ids, lps, eos_token_id=tok.eos_token_id)
                hyp = Hypothesis(scores.words, scores.logprobs, scores.rest, num_tokens=len(ids))
                item = idx[row // n_best]
                out[item] = (out[item] or []) + [hyp]
        out = distributed.gather_filled(out)
        for hyps in out:    # beam order is by length-penalised score; keep best-first by log-prob
            hyps.sort(key=lambda h: -h.logprob)
        return out

    @torch.inference_mode()
    def score(self, texts: list[str], candidates: list[list[str]], progress: bool = False) -> list[np.ndarray]:
        """Mean log-prob per token (EOS included) of each candidate target given the prompt."""
        self._require_model()
        tok = self.tokenizer
        tok.padding_side = "right"
        pairs = [(i, prompt_of(t, self.prompt_template), c) for i, (t, cands) in enumerate(zip(texts, candidates))
                 for c in cands]
        flat = np.empty(len(pairs))
        bs = self.config.eval_batch_size
        done = {}
        for start in tqdm(distributed.shard(range(0, len(pairs), bs)), desc=f"score {self.card.name}",
                          disable=not progress or not distributed.is_main(), leave=False):
            chunk = pairs[start:start + bs]
            seqs, first = [], []
            for _, prompt, cand in chunk:
                p_ids = tok(prompt)["input_ids"]
                full = tok(prompt + " " + cand)["input_ids"] + [tok.eos_token_id]
                seqs.append(full[:max(self.config.max_length, len(p_ids) + 1)])   # as in training
                first.append(len(p_ids))
            width = max(map(len, seqs))
            ids = torch.full((len(seqs), width), tok.pad_token_id)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for r, s in enumerate(seqs):
                ids[r, :len(s)] = torch.tensor(s)
                mask[r, :len(s)] = 1
            ids, mask = ids.to(self.model.device), mask.to(self.model.device)
            logp = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
            token_lp = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1).cpu()
            done[start] = [float(token_lp[r, f - 1:len(s) - 1].mean()) for r, (s, f) in enumerate(zip(seqs, first))]
        for start, values in distributed.gather_dict(done).items():
            flat[start:start + len(values)] = values
        out, k = [], 0
        for cands in candidates:
            out.append(flat[k:k + len(cands)])
            k += len(cands)
        return out


# -- encoder taggers -----------------------------------------------------------------------

def bio_labels(slot_types: list[str]) -> list[str]:
    return ["O"] + [f"{p}-{t}" for t in slot_types for p in ("B", "I")]


def entities_to_bio(words: list[str], entities: list[dict]) -> tuple[list[str], int]:
    """Tag ``words`` with the entities' fillers (each matched at its first unused word
    span, left to right). Returns the tags and how many entities were not found."""
    tags = ["O"] * len(words)
    missing = 0
    for ent in entities:
        filler = ent["filler"].split()
        found = False
        for start in range(len(words) - len(filler) + 1):
            if words[start:start + len(filler)] == filler and all(t == "O" for t in tags[start:start + len(filler)]):
                tags[start] = f"B-{ent['type']}"
                for j in range(start + 1, start + len(filler)):
                    tags[j] = f"I-{ent['type']}"
                found = True
                break
        missing += not found
    return tags, missing


def kbest_sequences(logp: np.ndarray, k: int) -> list[tuple[float, tuple[int, ...]]]:
    """The ``k`` most probable label sequences under independent positions ``logp [L, T]``
    (exact: beam search keeps every prefix of a top-k sequence)."""
    beams = [(0.0, ())]
    for row in logp:
        top = np.argsort(-row)[:k]
        beams = heapq.nlargest(k, ((s + float(row[t]), seq + (int(t),)) for s, seq in beams for t in top))
    return beams


def render_tags(words: list[str], tags: list[str], tag_logprobs: np.ndarray) -> Hypothesis:
    """A tag sequence → the JSON target as a :class:`Hypothesis`.

    Word log-probs: a key word (``{"time":``) carries its entity's B-tag log-prob, each
    filler word its own tag's (so the first filler word shares the B-tag's); words outside
    entities go to ``rest`` so that ``logprob`` is the tag sequence's exact log-prob.
    """
    spans, current = [], None
    for i, tag in enumerate(tags):     # word indices of each entity, read as tasks.generation.bio_to_entities
        prefix, _, kind = tag.partition("-")
        if tag == "O":
            current = None
        elif prefix == "B" or current is None or current[0] != kind:
            current = (kind, [i])
            spans.append(current)
        else:
            current[1].append(i)
    target = render_slots([(k, " ".join(words[i] for i in idx)) for k, idx in spans])
    total = float(tag_logprobs.sum())
    if not spans:
        return Hypothesis([target], np.array([total]), 0.0, num_tokens=len(words))
    pieces, cursor = [], 0
    grouped: dict[str, list] = {}
    for kind, idx in spans:
        grouped.setdefault(kind, []).append(idx)
    for kind, groups in grouped.items():
        key = json.dumps(kind, ensure_ascii=False)
        at = target.index(key, cursor)
        pieces.append(((at, at + len(key)), float(tag_logprobs[groups[0][0]])))
        cursor = at + len(key)
        for idx in groups:
            for i in idx:
                escaped = json.dumps(words[i], ensure_ascii=False)[1:-1]    # as it appears in the JSON
                at = target.index(escaped, cursor)
                pieces.append(((at, at + len(escaped)), float(tag_logprobs[i])))
                cursor = at + len(escaped)
    scores = tokens_to_words(target, [p[0] for p in pieces], [p[1] for p in pieces])
    return Hypothesis(scores.words, scores.logprobs, total - float(scores.logprobs.sum()), num_tokens=len(words))


class TaggerGenerator:
    """An encoder + BIO head whose tags are rendered into the JSON target.

    Attributes (after ``fit``): ``model``, ``tokenizer``, ``labels`` (BIO tag names),
    ``unmatched`` (training entities whose filler is not in the utterance, skipped).
    """

    def __init__(self, card: ModelCard | str, slot_types: list[str], config: GeneratorConfig | None = None,
                 prefer_offline: bool = True):
        self.card = load_card(card) if isinstance(card, str) else card
        if not slot_types:
            raise InvalidInputError("a tagger needs the task's slot types")
        self.labels = bio_labels(list(slot_types))
        self.config = config or GeneratorConfig(mode="full", learning_rate=5e-5, epochs=5)
        self.prefer_offline = prefer_offline
        self.model = self.tokenizer = None
        self.unmatched = 0
        self.history: list[dict] = []
        self.train_seconds = float("nan")

    def _training_rows(self, word_lists, tags):
        """Tokenised rows with each word's tag on its first sub-token (−100 elsewhere)."""
        enc = self.tokenizer(word_lists, is_split_into_words=True, truncation=True, max_length=self.config.max_length)
        rows = []
        for i in range(len(word_lists)):
            prev, labels = None, []
            for w in enc.word_ids(i):
                labels.append(-100 if w is None or w == prev else self.labels.index(tags[i][w]))
                prev = w
            rows.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                         "labels": labels})
        return rows

    def fit(self, texts: list[str], targets: list[str], seed: int = 0):
        from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                                  Trainer, set_seed)

        _check_pairs(texts, targets)
        set_seed(seed)
        source = resolve_weights(self.card, prefer_offline=self.prefer_offline)
        self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        words = [t.split() for t in texts]
        tags, self.unmatched = [], 0
        for w, y in zip(words, targets):
            entities, ok = parse_slots(y)
            if not ok:
                raise InvalidInputError(f"training target is not slot JSON: {y!r}")
            unknown = {e["type"] for e in entities} - {lab[2:] for lab in self.labels[1:]}
            if unknown:
                raise InvalidInputError(f"training target has slot type(s) {sorted(unknown)} outside the tagger's")
            t, missing = entities_to_bio(w, entities)
            tags.append(t)
            self.unmatched += missing
        if self.unmatched:
            log.warning("%s: %d training entities are not word spans of their utterance; left untagged",
                        self.card.name, self.unmatched)
        model = AutoModelForTokenClassification.from_pretrained(
            source, num_labels=len(self.labels), id2label=dict(enumerate(self.labels)),
            label2id={lab: i for i, lab in enumerate(self.labels)}, trust_remote_code=False, use_safetensors=True)
        cfg = self.config
        if cfg.mode == "head":
            for name, p in model.named_parameters():
                p.requires_grad = name.startswith("classifier")
        elif cfg.mode == "lora":
            from peft import get_peft_model
            model = get_peft_model(model, lora_config(cfg, task_type="TOKEN_CLS"))
        rows = self._training_rows(words, tags)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(model=model, args=training_arguments(cfg, seed, tmp), train_dataset=rows,
                              data_collator=DataCollatorForTokenClassification(self.tokenizer),
                              compute_loss_func=distributed.token_classification_loss())   # DDP: the batch's token mean
            done = train_then_merge(trainer, cfg.logging_dir)
        self.model, self.history, self.train_seconds = done.model, done.history, done.train_seconds
        return self

    @torch.inference_mode()
    def tag_logprobs(self, texts: list[str]) -> list[np.ndarray]:
        """Per text, ``[words, tags]`` log-probabilities (read at each word's first sub-token;
        words cut off by ``max_length`` get a uniform distribution)."""
        if self.model is None:
            raise InvalidInputError("the generator is not trained yet: call fit() first")
        words = [t.split() for t in texts]
        bs = self.config.eval_batch_size

        def run(start):
            chunk, out = words[start:start + bs], []
            enc = self.tokenizer(chunk, is_split_into_words=True, truncation=True, max_length=self.config.max_length,
                                 padding=True, return_tensors="pt")
            logp = torch.log_softmax(self.model(input_ids=enc["input_ids"].to(self.model.device),
                                                attention_mask=enc["attention_mask"].to(self.model.device)
                                                ).logits.float(), -1).cpu().numpy()
            for i, w in enumerate(chunk):
                lp = np.full((len(w), len(self.labels)), -np.log(len(self.labels)))
                seen = set()
                for pos, wid in enumerate(enc.word_ids(i)):
                    if wid is not None and wid not in seen:
                        lp[wid] = logp[i, pos]
                        seen.add(wid)
                out.append(lp)
            return out

        return [lp for part in distributed.map_batches(run, range(0, len(words), bs)) for lp in part]

    def generate(self, texts: list[str], n_best: int | None = None, progress: bool = True) -> list[list[Hypothesis]]:
        n_best = n_best or self.config.n_best
        out = []
        for text, lp in zip(texts, tqdm(self.tag_logprobs(texts), desc=f"tag {self.card.name}",
                                        disable=not progress, leave=False)):
            words = text.split()
            hyps = {}
            for _, seq in kbest_sequences(lp, n_best):
                hyp = render_tags(words, [self.labels[t] for t in seq], lp[np.arange(len(words)), list(seq)])
                # two tag sequences can render the same target (I- after O): keep the best
                if hyp.text not in hyps or hyps[hyp.text].logprob < hyp.logprob:
                    hyps[hyp.text] = hyp
            out.append(sorted(hyps.values(), key=lambda h: -h.logprob) or
                       [Hypothesis(["{}"], np.zeros(1), num_tokens=0)])
        return out

    def score(self, texts: list[str], candidates: list[list[str]], progress: bool = False,
              missing_logprob: float = -20.0) -> list[np.ndarray]:
        """Mean log-prob per word of the tag sequence each candidate implies; a candidate
        entity that is not a span of the utterance (or is malformed) adds one word at
        ``missing_logprob``."""
        out = []
        for text, lp, cands in zip(texts, self.tag_logprobs(texts), candidates):
            words = text.split()
            scores = []
            for cand in cands:
                entities, ok = parse_slots(cand)
                known = [e for e in entities if f"B-{e['type']}" in self.labels]
                tags, missing = entities_to_bio(words, known)
                missing += len(entities) - len(known) + (not ok)
                total = sum(lp[i, self.labels.index(t)] for i, t in enumerate(tags)) + missing * missing_logprob
                scores.append(total / max(len(words) + missing, 1))
            out.append(np.array(scores))
        return out
