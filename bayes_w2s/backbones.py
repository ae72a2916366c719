"""Backbones shared by weak models and strong students.

A classifier here is *backbone → masked mean (or last-token) pooling → linear head*, the
same for encoders and decoders, so that every model card trains and predicts the same
way. Three training modes:

``head``  the backbone is frozen; its pooled features are computed once (batched,
          length-sorted, cached on disk) and only the head is trained — what makes
          CPU sweeps over many losses and seeds affordable;
``lora``  LoRA adapters (peft) on the backbone plus the head;
``full``  every parameter is trained.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from . import distributed
from .cards import ModelCard, cache_dir, load_card, resolve_weights
from .errors import CorruptCacheError, InvalidInputError
from .io import atomic_path, sha256_bytes, warn_unreadable
from .train_config import MODES

log = logging.getLogger(__name__)


def load_backbone(card: ModelCard | str, prefer_offline: bool = True):
    """``(tokenizer, base model)`` for a card, safe by default (no remote code, safetensors)."""
    from transformers import AutoModel, AutoTokenizer

    card = load_card(card) if isinstance(card, str) else card
    source = resolve_weights(card, prefer_offline=prefer_offline)
    tok = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    if tok.pad_token is None:  # decoders often ship none; padding is masked out anyway
        tok.pad_token = tok.eos_token
    model = AutoModel.from_pretrained(source, trust_remote_code=False, use_safetensors=True,
                                      dtype=torch.float32)
    model.eval()
    return tok, model


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """``[B, T, D] → [B, D]``: masked mean, last non-pad token, or first token."""
    if how == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    if how == "last":
        last = attention_mask.sum(1) - 1      # tokenizers here pad on the right
        return hidden[torch.arange(hidden.shape[0]), last]
    if how == "cls":
        return hidden[:, 0]
    raise InvalidInputError(f"unknown pooling {how!r}; use mean, last or cls")


class PooledClassifierConfig(PretrainedConfig):
    """Configuration of a :class:`PooledClassifier`, saved as its ``config.json``.

    Args:
        backbone: the model card name, hub id or folder the backbone came from.
        card: that card's fields (a head-only classifier recomputes its features with it).
        backbone_config: the backbone's own ``config.to_dict()`` (``None`` when head-only):
            ``from_pretrained`` rebuilds the backbone from it, then loads the saved weights.
        hidden_size: size of the pooled features the head reads.
        pooling: ``mean`` | ``last`` | ``cls``.
        head_only: the ``head`` training mode: the model takes precomputed ``features``.
        text_max_length: tokens per text (features and tokenisation; not ``max_length``, which
            transformers reserves for generation).
        id2label / label2id / num_labels: as in every ``transformers`` classifier.
    """

    model_type = "bayes_w2s_pooled"

    def __init__(self, backbone: str | None = None, card: dict | None = None, backbone_config: dict | None = None,
                 hidden_size: int = 768, pooling: str = "mean", head_only: bool = False, text_max_length: int = 128,
                 **kwargs):
        self.backbone = backbone
        self.card = card
        self.backbone_config = backbone_config
        self.hidden_size = hidden_size
        self.pooling = pooling
        self.head_only = head_only
        self.text_max_length = text_max_length
        super().__init__(**kwargs)


class PooledClassifier(PreTrainedModel):
    """Backbone + pooling + linear head: a ``transformers`` model, so ``save_pretrained`` /
    ``from_pretrained`` (safetensors), ``AutoModelForSequenceClassification`` and ``Trainer``
    work as for any classifier. ``forward`` returns ``logits [B, K]`` (and a cross-entropy
    ``loss`` when given ``labels``).

    With ``config.head_only`` the module is the head alone and takes precomputed
    ``features`` — the ``head`` training mode.
    """

    config_class = PooledClassifierConfig
    base_model_prefix = "pooled"
    main_input_name = "input_ids"

    def __init__(self, config: PooledClassifierConfig, backbone: nn.Module | None = None):
        super().__init__(config)
        if backbone is None and not config.head_only:
            from transformers import AutoConfig, AutoModel
            spec = dict(config.backbone_config or {})
            if "model_type" not in spec:
                raise InvalidInputError("a PooledClassifierConfig that is not head_only needs the backbone's config")
            backbone = AutoModel.from_config(AutoConfig.for_model(spec.pop("model_type"), **spec))
        self.backbone = backbone
        self.pooling = config.pooling
        # what Trainer counts input tokens by (a head-only model sees features, not ids)
        self.main_input_name = "features" if config.head_only else "input_ids"
        self.head = nn.Linear(config.hidden_size, config.num_labels)
        # feature standardisation (set from training features in head mode; identity otherwise)
        self.register_buffer("feature_mean", torch.zeros(config.hidden_size))
        self.register_buffer("feature_scale", torch.ones(config.hidden_size))
        self.post_init()

    def _init_weights(self, module):
        # the head keeps PyTorch's default init (drawn under the training seed) and the backbone
        # its pretrained weights; from_pretrained loads every tensor from the file
        pass

    def set_feature_stats(self, mean, std, constant=None) -> None:
        """Standardise features by the training set's statistics. A feature that does not vary
        at all in training (``constant``: one item, identical texts) taught the head nothing:
        it gets an infinite scale, so it adds nothing at prediction. (The std clamp alone made
        such a feature's ~0.1 differences on new texts logits of ~1e5; and a float32 std of a
        constant column is rounding residue, up to ~1e-4, not 0, so "constant" is max = min.)"""
        scale = torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-6)
        if constant is not None:
            scale = torch.where(torch.as_tensor(constant, dtype=torch.bool), torch.full_like(scale, float("inf")),
                                scale)
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_scale.copy_(scale)

    def merge_and_unload(self) -> "PooledClassifier":
        """Fold LoRA adapters into the backbone's weights (a plain model again, saved and
        loaded like a fully fine-tuned one); a no-op without adapters."""
        if hasattr(self.backbone, "merge_and_unload"):
            self.backbone = self.backbone.merge_and_unload()
        return self

    def forward(self, input_ids=None, attention_mask=None, features=None, labels=None, **_):
        if features is None:
            if self.backbone is None:
                raise InvalidInputError("a head-only classifier needs precomputed `features`")
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            features = pool(hidden, attention_mask, self.pooling)
        logits = self.head((features - self.feature_mean) / self.feature_scale)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels.long())
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(PooledClassifierConfig.model_type, PooledClassifierConfig, exist_ok=True)
AutoModelForSequenceClassification.register(PooledClassifierConfig, PooledClassifier, exist_ok=True)


def card_fields(card: ModelCard) -> dict:
    """A card as a plain dict (saved with a classifier so it can be rebuilt without the card file)."""
    return {k: v for k, v in dataclasses.asdict(card).items() if k != "path"}


def classifier_config(card: ModelCard, num_classes: int, hidden_size: int, head_only: bool,
                      backbone_config: dict | None = None, max_length: int = 128,
                      label_names: list | None = None) -> PooledClassifierConfig:
    names = [str(n) for n in (label_names if label_names is not None else range(num_classes))]
    return PooledClassifierConfig(backbone=card.name if card.path is not None else card.hub_id,
                                  card=card_fields(card), backbone_config=backbone_config, hidden_size=hidden_size,
                                  pooling=card.pooling, head_only=head_only, text_max_length=max_length,
                                  id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})


def build_classifier(card: ModelCard | str, num_classes: int, mode: str = "head",
                     lora_r: int = 8, lora_alpha: int = 16, prefer_offline: bool = True,
                     max_length: int = 128, label_names: list | None = None):
    """``(tokenizer, PooledClassifier)`` for a card in the given mode."""
    if mode not in MODES:
        raise InvalidInputError(f"unknown training mode {mode!r}; use one of {MODES}")
    card = load_card(card) if isinstance(card, str) else card
    tok, base = load_backbone(card, prefer_offline)
    hidden = base.config.hidden_size if hasattr(base.config, "hidden_size") else base.config.get_text_config().hidden_size
    if mode == "head":
        return tok, PooledClassifier(classifier_config(card, num_classes, hidden, True, None, max_length, label_names))
    config = classifier_config(card, num_classes, hidden, False, base.config.to_dict(), max_length, label_names)
    if mode == "lora":
        from peft import get_peft_model

        from .training import lora_config
        # the pooler is unused (we pool ourselves): no adapters there
        base = get_peft_model(base, lora_config(SimpleNamespace(lora_r=lora_r, lora_alpha=lora_alpha),
                                                exclude_modules=r".*pooler.*"))
    base.train()
    return tok, PooledClassifier(config, base)


# -- frozen features ---------------------------------------------------------------------
def texts_fingerprint(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@torch.inference_mode()
def embed(texts: list[str], tokenizer, model, pooling: str = "mean", batch_size: int = 32,
          max_length: int = 128, sort_by_length: bool = True, desc: str = "embedding") -> np.ndarray:
    """Pooled features ``[N, D]`` of a frozen backbone.

    Batches are formed from length-sorted texts so little compute goes to padding; the
    output keeps the input order. ``batch_size=1, sort_by_length=False`` is the naive
    per-example loop (the benchmark's baseline). Under ``accelerate launch`` the batches
    are split across ranks and every rank gets all features (:mod:`bayes_w2s.distributed`).
    """
    if len(texts) == 0:
        raise InvalidInputError("cannot embed an empty list of texts")
    order = np.argsort([len(t) for t in texts], kind="stable") if sort_by_length else np.arange(len(texts))
    batches = [order[start:start + batch_size] for start in range(0, len(texts), batch_size)]
    device = next(model.parameters()).device

    def run(idx):
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt").to(device)
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        return pool(hidden, enc["attention_mask"], pooling).float().cpu().numpy()

    feats = np.concatenate(distributed.map_batches(
        run, batches, functools.partial(tqdm, desc=desc, unit="batch", leave=False, disable=not distributed.is_main())))
    out = np.empty_like(feats)
    out[order] = feats
    return out


class FeatureCache:
    """Frozen-backbone features on disk, keyed by card, max length and the texts.

    One ``.npz`` per (card, texts) holding the features and their SHA-256, so a file that
    was damaged after it was written is noticed; an unreadable or mismatched file is
    recomputed with a warning naming it. The backbone is loaded only when something is missing.
    Rows already seen in this process are also kept by text, so a subset of a featurised
    list (a cross-fitting fold) is assembled from memory instead of embedded again.
    """

    #: (card, pooling, max length) key -> {text: feature row}, shared by every instance
    _rows: dict[str, dict[str, np.ndarray]] = {}

    def __init__(self, card: ModelCard | str, max_length: int = 128, batch_size: int = 32,
                 prefer_offline: bool = True, root: Path | None = None):
        self.card = load_card(card) if isinstance(card, str) else card
        self.max_length, self.batch_size, self.prefer_offline = max_length, batch_size, prefer_offline
        self.root = Path(root) if root else cache_dir("features")
        self._backbone = None

    def _key(self) -> str:
        return hashlib.sha256(f"{self.card.fingerprint()}|{self.card.pooling}|{self.max_length}".encode()).hexdigest()[:12]

    def path(self, texts: list[str]) -> Path:
        return self.root / f"{self.card.name}-{self._key()}-{texts_fingerprint(texts)}.npz"

    def __call__(self, texts: list[str]) -> np.ndarray:
        rows = self._rows.setdefault(f"{self.root}|{self._key()}", {})
        path = self.path(texts)
        # rank 0 reads (it alone writes the files); the others get its copy, so all agree on a miss
        feats = distributed.on_main(self._load, texts, path, rows)
        if feats is None:
            if self._backbone is None:
                tok, model = load_backbone(self.card, self.prefer_offline)
                self._backbone = tok, model.to(distributed.device())
            tok, model = self._backbone
            feats = embed(texts, tok, model, self.card.pooling, self.batch_size, self.max_length,
                          desc=f"features {self.card.name}")
            if distributed.is_main():
                try:
                    save_features(path, feats)
                except OSError as exc:   # a cache that cannot be written costs time, not results
                    log.warning("could not write the feature cache %s (%s); continuing without it", path, exc)
        rows.update(zip(texts, feats))
        return feats

    def _load(self, texts: list[str], path: Path, rows: dict) -> np.ndarray | None:
        """Cached features of ``texts`` (memory, the file, or a legacy ``.npy``), or None.
        A legacy file that reads is rewritten in the current format."""
        legacy = path.with_suffix(".npy")   # written before features carried a checksum
        if texts and not path.exists() and not legacy.exists() and all(t in rows for t in texts):
            return np.stack([rows[t] for t in texts])
        feats = self._read(path, len(texts))
        if feats is None and legacy.exists():
            feats = self._read(legacy, len(texts))
            if feats is not None:
                try:
                    save_features(path, feats)
                except OSError as exc:
                    log.warning("could not write the feature cache %s (%s); continuing without it", path, exc)
        return feats

    @staticmethod
    def _read(path: Path, n: int) -> np.ndarray | None:
        if not path.exists():
            return None
        try:
            feats = load_features(path)
        except CorruptCacheError as exc:
            warn_unreadable(path, exc.__cause__ or exc)
            return None
        if feats.ndim != 2 or feats.shape[0] != n:
            warn_unreadable(path, f"features of shape {feats.shape} for {n} texts")
            return None
        return feats


def _checksum(feats: np.ndarray) -> str:
    return sha256_bytes(np.ascontiguousarray(feats).tobytes() + str((feats.dtype.str, feats.shape)).encode())


def save_features(path: Path, feats: np.ndarray) -> Path:
    """Write ``[N, D]`` features with their SHA-256 (``.npz``, no pickle), atomically."""
    with atomic_path(path) as tmp:
        np.savez(tmp, features=feats, sha256=np.array(_checksum(feats)))
    return path


def load_features(path: Path) -> np.ndarray:
    """Read what :func:`save_features` wrote (or a legacy ``.npy``); CorruptCacheError
    names the file when it cannot be read or its checksum does not match."""
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as z:
            feats, expected = z["features"], str(z["sha256"])
    except Exception as exc:   # zip, header and key errors all mean an unreadable file
        raise CorruptCacheError(f"cannot read cached features {path} ({exc}); delete it to recompute") from exc
    if _checksum(feats) != expected:
        raise CorruptCacheError(f"cached features {path} do not match their checksum; delete it to recompute")
    return feats
