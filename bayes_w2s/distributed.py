"""Rank-awareness for runs under ``accelerate launch`` (or ``torchrun``): several processes,
one per GPU or CPU worker.

Training is distributed by ``Trainer`` / TRL through accelerate (DDP, DeepSpeed, FSDP); what
is ours is the work around it:

* per-item work every rank needs (frozen features, weak labels, n-best lists, candidate
  scores) is split across ranks batch by batch and gathered (:func:`shard`,
  :func:`map_batches`, :func:`gather_dict`, :func:`gather_filled`). Whole batches move, so
  each batch is padded exactly as in a single process and the outputs match it;
* global work (posterior fitting) runs once, on rank 0, and its result is broadcast
  (:func:`on_main`);
* only rank 0 writes caches and results (:func:`is_main`); a rank that reads a cache gets
  rank 0's copy (:func:`on_main`), so every rank takes the same branch even where the
  ranks do not share a file system.

With one process (the default) every helper is a plain function call: no process group,
no accelerate import, nothing gathered. An exception on one rank inside a helper is
re-raised on every rank, so a failure stops the run instead of leaving the others waiting.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
_initialised = False


def world_size() -> int:
    """Number of processes of this run (``WORLD_SIZE`` set by the launcher; 1 otherwise)."""
    n = int(os.environ.get("WORLD_SIZE") or 1)
    if n > 1:
        _ensure_process_group()
    return n


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    if world_size() == 1:
        return 0
    import torch.distributed as dist
    return dist.get_rank()


def is_main() -> bool:
    """Rank 0: the one process that writes caches, results and logs."""
    return rank() == 0


def device():
    """The device this process computes on: its own accelerator under a launcher, else
    CUDA when there is one, else the CPU."""
    import torch
    if world_size() > 1:
        from accelerate import PartialState
        return PartialState().device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _ensure_process_group() -> None:
    # accelerate's PartialState starts the process group the launcher describes (NCCL on GPUs)
    # and pins each rank to its device; Trainer reuses the group. Without CUDA the processes
    # can only be CPU workers: ACCELERATE_USE_CPU makes accelerate (and TrainingArguments,
    # which rebuilds its state from the environment) pick gloo and DDP instead of treating
    # every process as a separate single-process run.
    global _initialised
    if not _initialised:
        import torch
        from accelerate import PartialState
        cpu = not torch.cuda.is_available()
        if cpu:
            os.environ.setdefault("ACCELERATE_USE_CPU", "true")
        PartialState(cpu=cpu)
        _initialised = True
        atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    # a gloo group left for interpreter shutdown can die in its own threads ("terminate called
    # without an active exception", exit status 134) after the run has finished its work
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op with one process)."""
    if world_size() > 1:
        import torch.distributed as dist
        dist.barrier()


class RankError(RuntimeError):
    """An exception on another rank that is not picklable, re-raised here by its text."""


def _all_gather(obj) -> list:
    import torch.distributed as dist
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _raise_first(outcomes: list[tuple[bool, Any]]) -> None:
    for ok, value in outcomes:
        if not ok:
            raise value


def _attempt(fn: Callable, *args, **kwargs) -> tuple[bool, Any]:
    try:
        return True, fn(*args, **kwargs)
    except Exception as exc:   # carried to every rank, then re-raised there
        try:
            import pickle
            pickle.dumps(exc)
            return False, exc
        except Exception:
            return False, RankError(f"rank {rank()}: {type(exc).__name__}: {exc}")


def on_main(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` computed on rank 0 only and broadcast to every rank.

    For global work (fitting a posterior) and for reading caches rank 0 wrote. ``fn`` must
    not call collective operations (training, :func:`map_batches`): the other ranks are not
    running it. Its result must be picklable.
    """
    if world_size() == 1:
        return fn(*args, **kwargs)
    import torch.distributed as dist
    box = [_attempt(fn, *args, **kwargs) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    _raise_first([box[0]])
    return box[0][1]


def all_agree(flag: bool) -> bool:
    """True when ``flag`` is true on every rank (e.g. a cache folder every rank can read)."""
    if world_size() == 1:
        return bool(flag)
    return all(_all_gather(bool(flag)))


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every ``world_size``-th one starting at its rank.

    Given length-sorted batches, round-robin gives every rank batches of every length."""
    n = world_size()
    return list(items) if n == 1 else list(items)[rank()::n]


def gather_dict(part: dict) -> dict:
    """The union of every rank's ``part`` (keys are disjoint: each rank's own items)."""
    if world_size() == 1:
        return part
    merged: dict = {}
    for p in _all_gather(part):
        merged.update(p)
    return merged


def gather_filled(values: list, missing=None) -> list:
    """A list each rank filled at its own positions (``missing`` elsewhere), completed
    from every rank."""
    if world_size() == 1:
        return values
    merged = gather_dict({i: v for i, v in enumerate(values) if v is not missing})
    return [merged.get(i, missing) for i in range(len(values))]


def map_batches(fn: Callable[[T], Any], batches: Sequence[T], progress: Callable | None = None) -> list:
    """``[fn(b) for b in batches]``, the batches split across ranks and the results gathered
    on every rank in batch order.

    ``progress`` wraps this rank's batches (e.g. ``functools.partial(tqdm, desc=…)``). An
    exception in ``fn`` on any rank is raised on every rank.
    """
    batches = list(batches)
    wrap = progress or (lambda x: x)
    if world_size() == 1:
        return [fn(b) for b in wrap(batches)]
    mine = list(range(len(batches)))[rank()::world_size()]

    def run():
        return {i: fn(batches[i]) for i in wrap(mine)}

    outcomes = _all_gather(_attempt(run))
    _raise_first(outcomes)
    merged = {}
    for _, part in outcomes:
        merged.update(part)
    return [merged[i] for i in range(len(batches))]


@contextlib.contextmanager
def shared_dataset(columns: dict):
    """``datasets.Dataset.from_dict(columns)``, stored where every rank reads the same files.

    A trainer that caches a derived column on rank 0 and reads it back on every rank (TRL's
    precomputed reference log-probs) writes that cache next to its dataset's files; an
    in-memory dataset has none, so each process would look in its own temporary folder.
    With several processes the dataset is saved once under the cache folder (which must
    be shared across nodes) and removed afterwards; with one it stays in memory.
    """
    from datasets import Dataset, load_from_disk
    if world_size() == 1:
        yield Dataset.from_dict(columns)
        return
    from .cards import cache_dir
    folder = on_main(tempfile.mkdtemp, prefix="dataset-", dir=cache_dir("shared"))
    if is_main():
        Dataset.from_dict(columns).save_to_disk(folder)
    barrier()
    try:
        yield load_from_disk(folder)
    finally:
        barrier()
        if is_main():
            shutil.rmtree(folder, ignore_errors=True)


def global_share(total):
    """``Σ_ranks total / world_size``: this rank's equal share of a sum over the whole batch.

    DDP averages gradients over ranks, which is exact for a per-item mean over equal
    slices but not for a ratio such as ``Σ w_i l_i / Σ w_i`` (each slice has its own
    ``Σ w``). Dividing each slice's ``Σ w l`` by the global share of ``Σ w`` instead makes
    the average the single-process loss. Call it in a training step only (every rank runs
    the step); with one process it returns ``total``.
    """
    if world_size() == 1:
        return total
    import torch.distributed as dist
    shared = total.detach().clone()
    dist.all_reduce(shared)
    return shared / world_size()


def token_classification_loss():
    """``Trainer(compute_loss_func=…)`` for token classification under DDP, else None.

    A token classifier's own loss is the mean over its batch's labelled tokens; over DDP
    that becomes a mean of per-rank means, which weights the slices' tokens unequally.
    Summing instead and dividing by ``num_items_in_batch`` (the labelled tokens of the whole
    batch, which ``Trainer`` counts across ranks and then multiplies back by the number of
    processes) gives the single-process token mean. With one process the model's own loss
    is kept.
    """
    if world_size() == 1:
        return None
    import torch.nn.functional as F

    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"]
        total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                                reduction="sum")
        return total / (num_items_in_batch if num_items_in_batch is not None else labels.ne(-100).sum())
    return loss


def batch_arguments(batch_size: int) -> dict:
    """``TrainingArguments`` settings that keep ``batch_size`` items per optimiser step.

    Each of the ``n`` processes takes ``batch_size / n`` items per step. accelerate hands
    rank ``r`` every ``n``-th of the sampler's batches, and its seeded sampler draws the same
    order as one process, so a step's items are those of the single-process step; DDP
    averages the ranks' equal-sized gradients into the same mean. The last short batch of
    an epoch is the exception: accelerate completes it with items from the epoch's start.
    A batch that does not divide over the processes is rounded up, with a warning.
    """
    n = world_size()
    per = -(-batch_size // n)
    if per * n != batch_size:
        log.warning("batch_size %d does not divide over %d processes: %d per process, %d per step, so the steps "
                    "differ from a single-process run's", batch_size, n, per, per * n)
    return {"per_device_train_batch_size": per}
