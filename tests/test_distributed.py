"""bayes_w2s.distributed: plain calls with one process; sharding, gathering, broadcasting and
error propagation across two real gloo processes."""
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from bayes_w2s import distributed
from bayes_w2s.errors import InvalidInputError


def test_one_process_helpers_are_plain_calls(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    calls = []
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert distributed.shard([3, 1, 2]) == [3, 1, 2]
    assert distributed.map_batches(lambda b: calls.append(b) or b * 2, [1, 2, 3]) == [2, 4, 6] and calls == [1, 2, 3]
    assert distributed.on_main(lambda x, y=0: x + y, 1, y=2) == 3
    part = {0: "a"}
    assert distributed.gather_dict(part) is part
    assert distributed.gather_filled([None, 1]) == [None, 1]
    assert distributed.all_agree(True) and not distributed.all_agree(False)
    total = torch.tensor(3.0)
    assert distributed.global_share(total) is total
    assert distributed.batch_arguments(16) == {"per_device_train_batch_size": 16}
    distributed.barrier()
    with pytest.raises(InvalidInputError):   # an error is the caller's, unchanged
        distributed.on_main(lambda: (_ for _ in ()).throw(InvalidInputError("boom")))
    assert not torch.distributed.is_initialized()   # no process group was started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# run by each of the two processes: every helper, and embed() of a tiny encoder, sharded
WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from bayes_w2s import distributed
    from bayes_w2s.errors import InvalidInputError
    out, r = {}, distributed.rank()
    out["world"] = distributed.world_size()
    out["shard"] = distributed.shard(list(range(5)))
    ran = []
    out["mapped"] = distributed.map_batches(lambda b: ran.append(b) or b * 10, list(range(5)))
    out["ran"] = ran
    out["on_main"] = distributed.on_main(lambda: distributed.rank())
    filled = [None] * 4
    for i in distributed.shard(range(4)):
        filled[i] = f"item{i}"
    out["filled"] = distributed.gather_filled(filled)
    out["agree"] = [distributed.all_agree(True), distributed.all_agree(r == 0)]
    out["share"] = float(distributed.global_share(torch.tensor(float(r + 1))))
    out["batch_args"] = distributed.batch_arguments(16)
    for name, fn in [("main_error", lambda: distributed.on_main(
                          lambda: (_ for _ in ()).throw(InvalidInputError("only rank 0 fails")))),
                     ("shard_error", lambda: distributed.map_batches(
                          lambda b: 1 / 0 if distributed.rank() == 1 else b, [0, 1]))]:
        try:
            fn()
            out[name] = None
        except Exception as exc:
            out[name] = f"{type(exc).__name__}: {exc}"
    if len(sys.argv) > 2:   # features of a tiny encoder, split over the two ranks by batch
        from transformers import AutoModel, AutoTokenizer
        from bayes_w2s.backbones import embed
        tok, model = AutoTokenizer.from_pretrained(sys.argv[2]), AutoModel.from_pretrained(sys.argv[2]).eval()
        texts = [("word " * (1 + (7 * i) % 23)).strip() for i in range(37)]
        seen = []
        real_forward = model.forward
        model.forward = lambda **kw: seen.append(kw["input_ids"].shape[0]) or real_forward(**kw)
        out["embed"] = embed(texts, tok, model, batch_size=4).tolist()
        out["embedded_items"] = sum(seen)
    with open(sys.argv[1] + f".{r}", "w") as fh:
        json.dump(out, fh)
""")


def _launch(tmp_path, *extra) -> list[dict]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    procs = []
    for r in range(2):
        env = dict(os.environ, WORLD_SIZE="2", RANK=str(r), LOCAL_RANK=str(r), LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / "out"), *extra], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    return [json.loads((tmp_path / f"out.{r}").read_text()) for r in range(2)]


def test_two_processes(tmp_path, tiny_encoder):
    r0, r1 = _launch(tmp_path, tiny_encoder)
    assert r0["world"] == r1["world"] == 2
    assert (r0["shard"], r1["shard"]) == ([0, 2, 4], [1, 3])
    assert (r0["ran"], r1["ran"]) == ([0, 2, 4], [1, 3])                       # each batch ran once ...
    assert r0["mapped"] == r1["mapped"] == [0, 10, 20, 30, 40]                 # ... and all came back in order
    assert r0["on_main"] == r1["on_main"] == 0                                 # computed on rank 0, broadcast
    assert r0["filled"] == r1["filled"] == ["item0", "item1", "item2", "item3"]
    assert r0["agree"] == r1["agree"] == [True, False]
    assert r0["share"] == r1["share"] == 1.5                                   # (1 + 2) / 2
    assert r0["batch_args"] == {"per_device_train_batch_size": 8}                # 16 per step over 2 ranks
    # an error on one rank is raised on both, instead of leaving the other waiting
    assert r0["main_error"] == r1["main_error"] == "InvalidInputError: only rank 0 fails"
    assert r0["shard_error"] == r1["shard_error"] == "ZeroDivisionError: division by zero"
    # features: every rank embedded about half the texts, and both hold all 37, equal to one process's
    assert r0["embedded_items"] + r1["embedded_items"] == 37 and min(r0["embedded_items"], r1["embedded_items"]) >= 16
    from transformers import AutoModel, AutoTokenizer
    from bayes_w2s.backbones import embed
    torch.set_num_threads(1)
    tok, model = AutoTokenizer.from_pretrained(tiny_encoder), AutoModel.from_pretrained(tiny_encoder).eval()
    texts = [("word " * (1 + (7 * i) % 23)).strip() for i in range(37)]
    single = embed(texts, tok, model, batch_size=4)
    np.testing.assert_array_equal(np.asarray(r0["embed"]), np.asarray(r1["embed"]))
    np.testing.assert_allclose(np.asarray(r0["embed"]), single, rtol=0, atol=1e-6)
