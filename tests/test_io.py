"""Atomic, per-process cache writes (``bayes_w2s.io``) and the cache files built on them."""
import collections
import multiprocessing
import os
import time

import numpy as np
import pytest

from bayes_w2s.backbones import load_features, save_features
from bayes_w2s.errors import CorruptCacheError
from bayes_w2s.io import atomic_dir, atomic_path, locked, write_text
from bayes_w2s.weak import WeakLabels
from bayes_w2s.weak.hypotheses import Hypothesis, WeakHypotheses


def test_atomic_path_replaces_or_leaves_the_old_file(tmp_path):
    target = tmp_path / "sub" / "r.csv"          # a missing folder (a cache cleared mid-run) is recreated
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp.name.endswith(".csv") and tmp != target
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert os.listdir(target.parent) == ["r.csv"]  # no temp file left behind
    write_text(target, "new")
    assert target.read_text() == "new" and os.listdir(target.parent) == ["r.csv"]


def test_atomic_dir_replaces_a_folder(tmp_path):
    target = tmp_path / "model"
    for content in ("one", "two"):
        with atomic_dir(target) as tmp:
            (tmp / "w.txt").write_text(content)
        assert (target / "w.txt").read_text() == content
    assert os.listdir(tmp_path) == ["model"]


def _build_once(path, log):
    """Build ``path`` unless built, under the lock; append this process's action to ``log``."""
    with locked(path):
        built = (path / ".complete").exists()
        if not built:
            with atomic_dir(path) as tmp:
                time.sleep(0.2)                       # a slow build: the other process must wait
                (tmp / ".complete").touch()
        with open(log, "a") as fh:
            fh.write("reused\n" if built else "built\n")


def test_locked_builds_once_while_the_other_process_waits(tmp_path):
    """Two processes "build it unless built" under :func:`locked`: one builds, the other waits and
    reuses it — neither swaps a finished folder away from the other (checked, then swapped, outside
    a lock, two processes on a cold cache could)."""
    target, log = tmp_path / "model", tmp_path / "log.txt"
    target.mkdir()
    (target / "half.bin").write_text("a crash mid-build")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.starmap(_build_once, [(target, log), (target, log)])
    assert sorted(log.read_text().split()) == ["built", "reused"]
    assert os.listdir(target) == [".complete"]
    assert sorted(os.listdir(tmp_path)) == [".model.lock", "log.txt", "model"]


def test_feature_checksum_catches_a_damaged_file(tmp_path):
    feats = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    path = save_features(tmp_path / "f.npz", feats)
    assert np.array_equal(load_features(path), feats)
    other = tmp_path / "g.npz"                     # the same container, another array: the checksum differs
    np.savez(other, features=feats + 1, sha256=np.load(path)["sha256"])
    with pytest.raises(CorruptCacheError, match="g.npz do not match their checksum"):
        load_features(other)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptCacheError, match="f.npz"):
        load_features(path)


# -- two processes hammering one cache path -----------------------------------------------

def _weak_labels(rng):
    return WeakLabels(rng.dirichlet(np.ones(3), size=(50, 1)), ["m"], ["a", "b", "c"])


def _hypotheses(rng):
    words = [str(w) for w in rng.integers(0, 9, 3)]
    return WeakHypotheses([[[Hypothesis(words, np.zeros(3), 0.0, 3)]]], ["m"], ["0"])


WRITERS = {
    "weak_labels": (lambda rng, p: _weak_labels(rng).save(p), WeakLabels.load, "x.npz"),
    "features": (lambda rng, p: save_features(p, rng.normal(size=(50, 8)).astype(np.float32)), load_features, "f.npz"),
    "hypotheses": (lambda rng, p: _hypotheses(rng).save(p), WeakHypotheses.load, "h.json.gz"),
}


def _hammer(kind, path, seed, n):
    write, read, _ = WRITERS[kind]
    rng = np.random.default_rng(seed)
    errors = collections.Counter()
    for _ in range(n):
        for op, fn in (("write", lambda: write(rng, path)), ("read", lambda: read(path))):
            try:
                fn()
            except Exception as exc:   # noqa: BLE001 -- counting every failure is the point
                errors[f"{op} {type(exc).__name__}"] += 1
    return errors


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_two_processes_hammering_one_cache_path(tmp_path, kind):
    """2 × 300 interleaved writes and reads of one path: no reader ever sees a partial
    file and no writer loses its temp file (the fixed temp name gave hundreds of errors)."""
    path = tmp_path / WRITERS[kind][2]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.starmap(_hammer, [(kind, path, 0, 300), (kind, path, 1, 300)])
    errors = sum(results, collections.Counter())
    assert not errors, dict(errors)
    assert os.listdir(tmp_path) == [path.name]      # no temp files left behind


def test_written_files_and_folders_follow_the_umask(tmp_path):
    """mkstemp / mkdtemp made private files; results were 0600 whatever the umask said."""
    for umask in (0o022, 0o077):
        old = os.umask(umask)
        try:
            write_text(tmp_path / f"r{umask}.csv", "x")
            with atomic_dir(tmp_path / f"model{umask}") as tmp:
                (tmp / "w.txt").write_text("w")
        finally:
            os.umask(old)
        assert (tmp_path / f"r{umask}.csv").stat().st_mode & 0o777 == 0o666 & ~umask
        assert (tmp_path / f"model{umask}").stat().st_mode & 0o777 == 0o777 & ~umask
