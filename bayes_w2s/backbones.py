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

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .cards import ModelCard, cache_dir, load_card, resolve_weights
from .errors import CorruptCacheError, InvalidInputError

log = logging.getLogger(__name__)
MODES = ("head", "lora", "full")


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


class PooledClassifier(nn.Module):
    """Backbone + pooling + linear head; ``forward`` returns ``{"logits": [B, K]}``.

    With ``backbone=None`` the module is the head alone and takes precomputed
    ``features`` — the ``head`` training mode.
    """

    def __init__(self, hidden_size: int, num_classes: int, backbone: nn.Module | None = None,
                 pooling: str = "mean"):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.head = nn.Linear(hidden_size, num_classes)
        # feature standardisation (set from training features in head mode; identity otherwise)
        self.register_buffer("feature_mean", torch.zeros(hidden_size))
        self.register_buffer("feature_scale", torch.ones(hidden_size))

    def set_feature_stats(self, mean, std) -> None:
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_scale.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-6))

    def forward(self, input_ids=None, attention_mask=None, features=None, **_):
        if features is None:
            if self.backbone is None:
                raise InvalidInputError("a head-only classifier needs precomputed `features`")
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            features = pool(hidden, attention_mask, self.pooling)
        return {"logits": self.head((features - self.feature_mean) / self.feature_scale)}


def build_classifier(card: ModelCard | str, num_classes: int, mode: str = "head",
                     lora_r: int = 8, lora_alpha: int = 16, prefer_offline: bool = True):
    """``(tokenizer, PooledClassifier)`` for a card in the given mode."""
    if mode not in MODES:
        raise InvalidInputError(f"unknown training mode {mode!r}; use one of {MODES}")
    card = load_card(card) if isinstance(card, str) else card
    tok, base = load_backbone(card, prefer_offline)
    hidden = base.config.hidden_size if hasattr(base.config, "hidden_size") else base.config.get_text_config().hidden_size
    if mode == "head":
        return tok, PooledClassifier(hidden, num_classes, None, card.pooling)
    if mode == "lora":
        from peft import LoraConfig, get_peft_model
        base = get_peft_model(base, LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0,
                                               target_modules="all-linear",
                                               # the pooler is unused (we pool ourselves): no adapters there
                                               exclude_modules=r".*pooler.*"))
    base.train()
    return tok, PooledClassifier(hidden, num_classes, base, card.pooling)


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
    per-example loop (the benchmark's baseline).
    """
    if len(texts) == 0:
        raise InvalidInputError("cannot embed an empty list of texts")
    order = np.argsort([len(t) for t in texts], kind="stable") if sort_by_length else np.arange(len(texts))
    chunks = []
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", leave=False):
        idx = order[start:start + batch_size]
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt")
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        chunks.append(pool(hidden, enc["attention_mask"], pooling).float().numpy())
    feats = np.concatenate(chunks)
    out = np.empty_like(feats)
    out[order] = feats
    return out


class FeatureCache:
    """Frozen-backbone features on disk, keyed by card, max length and the texts.

    One ``.npy`` per (card, texts); the backbone is loaded only when something is missing.
    """

    def __init__(self, card: ModelCard | str, max_length: int = 128, batch_size: int = 32,
                 prefer_offline: bool = True, root: Path | None = None):
        self.card = load_card(card) if isinstance(card, str) else card
        self.max_length, self.batch_size, self.prefer_offline = max_length, batch_size, prefer_offline
        self.root = Path(root) if root else cache_dir("features")
        self._backbone = None

    def path(self, texts: list[str]) -> Path:
        key = hashlib.sha256(f"{self.card.fingerprint()}|{self.card.pooling}|{self.max_length}".encode()).hexdigest()[:12]
        return self.root / f"{self.card.name}-{key}-{texts_fingerprint(texts)}.npy"

    def __call__(self, texts: list[str]) -> np.ndarray:
        path = self.path(texts)
        if path.exists():
            try:
                feats = np.load(path, allow_pickle=False)
            except Exception as exc:
                raise CorruptCacheError(f"cannot read cached features {path} ({exc}); delete it to recompute") from exc
            if feats.shape[0] != len(texts):
                raise CorruptCacheError(f"cached features {path} have {feats.shape[0]} rows for {len(texts)} texts; delete it")
            return feats
        if self._backbone is None:
            self._backbone = load_backbone(self.card, self.prefer_offline)
        tok, model = self._backbone
        feats = embed(texts, tok, model, self.card.pooling, self.batch_size, self.max_length,
                      desc=f"features {self.card.name}")
        tmp = path.with_name(path.stem + ".tmp.npy")
        np.save(tmp, feats)
        tmp.replace(path)
        return feats
