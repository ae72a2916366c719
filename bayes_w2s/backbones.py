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
from .io import atomic_path, sha256_bytes, warn_unreadable

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
        legacy = path.with_suffix(".npy")   # written before features carried a checksum
        if texts and not path.exists() and not legacy.exists() and all(t in rows for t in texts):
            return np.stack([rows[t] for t in texts])
        feats = self._read(path, len(texts))
        if feats is None:
            feats = self._read(legacy, len(texts)) if legacy.exists() else None
            if feats is None:
                if self._backbone is None:
                    self._backbone = load_backbone(self.card, self.prefer_offline)
                tok, model = self._backbone
                feats = embed(texts, tok, model, self.card.pooling, self.batch_size, self.max_length,
                              desc=f"features {self.card.name}")
            try:
                save_features(path, feats)
            except OSError as exc:   # a cache that cannot be written costs time, not results
                log.warning("could not write the feature cache %s (%s); continuing without it", path, exc)
        rows.update(zip(texts, feats))
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
