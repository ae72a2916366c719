"""Label aggregation: bayes_w2s posteriors against crowd-kit and Snorkel.

(a) synthetic hard votes with known truth — N = 10k, 100k, 1M items, 5 weak models,
    4 classes, skewed class prior, each model with its own random confusion matrix
    (accuracies 0.55–0.8); plus the 2,000 × 5 label-switching case for NUTS;
(a') sparse synthetic crowds shaped like public annotation sets (27–176 annotators,
    2–4 classes, a few labels per item, groups of annotators that err together);
(b) the real weak labels that the pipeline saved for SST-2 and AG News
    (``experiments/results/<task>/weak_labels_seed0_strong_train.npz``; truth re-read
    from the task's split, so no dataset content is committed).

Each (dataset, method) runs in a fresh subprocess so that its wall time and peak memory
(VmHWM reset before the fit, Linux) are its own; inputs are built before timing starts.
crowd-kit and our ``*(DataFrame)`` rows take the same long DataFrame (task, worker, label);
``*(array)`` rows take the ``[N, M]`` vote matrix. MACE and GLAD run up to 100k items.

    python experiments/bench_aggregation.py --out experiments/results/bench_aggregation
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ACCURACIES = (0.55, 0.6, 0.7, 0.75, 0.8)
CLASS_PRIOR = (0.4, 0.3, 0.2, 0.1)
SLOW_METHODS_MAX_N = 100_000


# -- data -----------------------------------------------------------------------------------

def synthetic(n: int, seed: int = 0, uniform_errors: bool = False):
    """Votes [N, 5] over 4 classes and the truth; each model's errors follow its own confusion."""
    rng = np.random.default_rng(seed)
    k = len(CLASS_PRIOR)
    prior = np.full(k, 1 / k) if uniform_errors else np.asarray(CLASS_PRIOR)
    truth = rng.choice(k, size=n, p=prior)
    votes = np.empty((n, len(ACCURACIES)), dtype=np.int64)
    for m, acc in enumerate(ACCURACIES):
        conf = np.empty((k, k))
        for c in range(k):
            off = np.full(k - 1, 1 / (k - 1)) if uniform_errors else rng.dirichlet(np.ones(k - 1))
            conf[c] = np.insert(off * (1 - acc), c, acc)
        cum = conf.cumsum(1)[truth]                                   # [N, K]
        votes[:, m] = np.minimum((rng.random(n)[:, None] > cum).sum(1), k - 1)
    return votes, truth, None


def crowd(n: int, workers: int = 100, k: int = 4, per_item: int = 10, groups: int = 5, shared: float = 0.2,
          seed: int = 0):
    """Sparse crowd shaped like public annotation sets (27–176 annotators, 2–4 classes):
    each item gets ``per_item`` of ``workers`` annotators at random (−1 elsewhere); each
    annotator has its own confusion (accuracy 0.55–0.9) and belongs to one of ``groups``;
    on a ``shared`` fraction of items a whole group errs together with one wrong label
    (correlated annotators)."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(k, size=n, p=np.full(k, 1 / k))
    acc = rng.uniform(0.55, 0.9, workers)
    group = rng.integers(0, groups, workers)
    conf = np.empty((workers, k, k))
    for w in range(workers):
        for c in range(k):
            conf[w, c] = np.insert(rng.dirichlet(np.ones(k - 1)) * (1 - acc[w]), c, acc[w])
    chosen = np.argsort(rng.random((n, workers)), 1)[:, :per_item]             # per_item distinct annotators
    slip = rng.random((n, groups)) < shared                                      # group errs together here
    group_label = (truth[:, None] + rng.integers(1, k, (n, groups))) % k
    votes = np.full((n, workers), -1)
    rows = np.repeat(np.arange(n), per_item)
    cols = chosen.reshape(-1)
    own = (conf[cols, truth[rows]].cumsum(1) < rng.random(len(rows))[:, None]).sum(1)
    g = group[cols]
    votes[rows, cols] = np.where(slip[rows, g], group_label[rows, g], np.minimum(own, k - 1))
    return votes, truth, None


def real(task: str):
    """Weak labels saved by the pipeline (seed 0, strong_train) and the truth of those items."""
    from bayes_w2s import WeakLabels
    from bayes_w2s.config import ExperimentConfig
    from bayes_w2s.pipeline import experiment_task
    path = ROOT / "experiments" / "results" / task / "weak_labels_seed0_strong_train.npz"
    if not path.exists():
        raise SystemExit(f"{path} missing: run `bayes-w2s run experiments/configs/{task}.yaml` first")
    wl = WeakLabels.load(path)
    # the experiment's own split (gold slice and weak label budget included)
    split = experiment_task(ExperimentConfig.from_yaml(ROOT / "experiments" / "configs" / f"{task}.yaml")).strong_train
    label_of = dict(zip(split["id"], split["label"]))
    truth = np.array([label_of[i] for i in wl.item_ids])
    return wl.votes(), truth, wl


def load(dataset: str):
    kind, _, arg = dataset.partition(":")
    if kind == "synthetic":
        return synthetic(int(arg))
    if kind == "switching":
        return synthetic(int(arg), seed=0, uniform_errors=True)
    if kind == "crowd":           # crowd:<items>:<annotators>:<classes>:<labels per item>
        n, workers, k, per_item = (int(x) for x in arg.split(":"))
        return crowd(n, workers, k, per_item)
    return real(arg)


def long_frame(votes: np.ndarray):
    import pandas as pd
    n, m = votes.shape
    keep = votes.reshape(-1) >= 0
    return pd.DataFrame({"task": np.repeat(np.arange(n), m)[keep], "worker": np.tile(np.arange(m), n)[keep],
                         "label": votes.reshape(-1)[keep]})


# -- methods: each returns item probabilities [N, K] in item order --------------------------

def _proba_frame(frame, n: int, k: int) -> np.ndarray:
    out = np.zeros((n, k))
    cols = [c for c in frame.columns if 0 <= int(c) < k]
    out[np.asarray(frame.index, dtype=int)[:, None], np.asarray(cols, dtype=int)[None, :]] = frame[cols].to_numpy()
    return out


def run_method(method: str, votes, k: int, frame, wl, info: dict):
    n = len(votes)
    if method.startswith("crowdkit:"):
        import crowdkit.aggregation as ck
        name = method.split(":")[1]
        model = {"MajorityVote": ck.MajorityVote, "DawidSkene": lambda: ck.DawidSkene(n_iter=100),
                 "OneCoinDawidSkene": lambda: ck.OneCoinDawidSkene(n_iter=100), "MACE": ck.MACE,
                 "GLAD": ck.GLAD}[name]()
        return _proba_frame(model.fit_predict_proba(frame), n, k)
    if method == "snorkel:LabelModel":
        from snorkel.labeling.model import LabelModel
        model = LabelModel(cardinality=k, verbose=False)
        model.fit(votes, n_epochs=500, seed=0, progress_bar=False)
        return model.predict_proba(votes)
    from bayes_w2s import fit_posterior
    model, inference, source = method.split(":")[1:]
    labels = {"df": frame, "array": votes, "soft": wl}[source]
    kwargs = {"num_classes": k} if source != "soft" else {}
    if inference == "nuts":
        kwargs.update(num_chains=4, num_samples=500, warmup_steps=300, progress=False,
                      target_accept_prob=float(info.get("target_accept_prob", 0.8)))
    if inference == "svi":
        kwargs.update(steps=1000, progress=False, subsample_size=None if n <= 20_000 else 10_000)
        if model == "hierarchical":
            kwargs.update(guide="normal", num_draws=200)
    post = fit_posterior(labels, model=model, method=inference, **kwargs)
    if inference == "nuts":
        diag = post.diagnostics(warn=False)
        info.update({key: diag[key] for key in ("max_rhat", "min_ess_bulk", "divergences")})
        info["sampling_seconds"] = post.info["sampling_seconds"]
    return post.item_probs


def _import_for(method: str):
    if method.startswith("crowdkit"):
        import crowdkit.aggregation  # noqa: F401
    elif method.startswith("snorkel"):
        import snorkel.labeling.model  # noqa: F401
    else:
        import bayes_w2s.posterior  # noqa: F401


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def child(job: dict) -> dict:
    """Run one (dataset, method) in this fresh process and report metrics."""
    from bayes_w2s.metrics import accuracy, expected_calibration_error
    votes, truth, wl = load(job["dataset"])
    k = int(max(votes.max(), truth.max()) + 1) if wl is None else wl.num_classes
    frame = long_frame(votes) if "crowdkit" in job["method"] or ":df" in job["method"] else None
    info = dict(job)
    _import_for(job["method"])            # imports are not part of the fit
    try:                                  # reset the peak-RSS counter so the fit's own peak is measured
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    base = _rss_kb("VmRSS")
    start = time.perf_counter()
    probs = run_method(job["method"], votes, k, frame, wl, info)
    seconds = time.perf_counter() - start
    peak = _rss_kb("VmHWM")
    probs = np.clip(np.asarray(probs, dtype=np.float64), 0, None)
    probs = probs / probs.sum(1, keepdims=True)
    info.update(n=len(votes), seconds=seconds, peak_mb=max(peak - base, 0) / 1024,
                accuracy=accuracy(probs, truth), log_loss=float(-np.log(np.clip(probs[np.arange(len(truth)), truth],
                                                                                1e-15, 1)).mean()),
                ece=expected_calibration_error(probs, truth))
    return info


# -- driver ---------------------------------------------------------------------------------

OURS_VOTES = ["bayes_w2s:dawid_skene:em:df", "bayes_w2s:dawid_skene:em:array", "bayes_w2s:one_coin:em:array"]
#: the posterior engine's fast (EM / VB) fits and the correlated-annotator model
OURS_FAST = ["bayes_w2s:dawid_skene:vb:array", "bayes_w2s:one_coin:vb:array", "bayes_w2s:ebcc:vb:array"]
#: sparse crowds: (items, annotators, classes, labels per item)
CROWDS = ["crowd:1000:100:4:10", "crowd:2000:40:2:5", "crowd:5000:176:3:6", "crowd:20000:30:4:4"]
BASELINES = ["crowdkit:MajorityVote", "crowdkit:DawidSkene", "crowdkit:OneCoinDawidSkene", "crowdkit:MACE",
             "crowdkit:GLAD", "snorkel:LabelModel"]


def jobs(sizes, real_tasks, with_nuts: bool, crowds=()):
    out = []
    for n in sizes:
        for method in OURS_VOTES + OURS_FAST + BASELINES + (["bayes_w2s:dawid_skene:svi:array"] if n <= 10_000
                                                            else []):
            if method.split(":")[-1] in ("MACE", "GLAD") and n > SLOW_METHODS_MAX_N:
                continue
            out.append({"dataset": f"synthetic:{n}", "method": method})
    if with_nuts:
        for tap in (0.65, 0.8):
            out.append({"dataset": "switching:2000", "method": "bayes_w2s:dawid_skene:nuts:array",
                        "target_accept_prob": tap})
    for dataset in crowds:
        small = int(dataset.split(":")[1]) <= 2000
        for method in OURS_VOTES + OURS_FAST + BASELINES + ["bayes_w2s:hierarchical:svi:array"] + \
                (["bayes_w2s:dawid_skene:nuts:array"] if small and with_nuts else []):
            out.append({"dataset": dataset, "method": method})
    for task in real_tasks:
        for method in OURS_VOTES + OURS_FAST + BASELINES + ["bayes_w2s:soft:em:soft", "bayes_w2s:logistic_t:em:soft",
                                                            "bayes_w2s:logistic_t_hetero:em:soft",
                                                            "bayes_w2s:hierarchical:svi:array",
                                                            "bayes_w2s:dawid_skene:nuts:array", "bayes_w2s:soft:nuts:soft"]:
            out.append({"dataset": f"real:{task}", "method": method})
    return out


def job_key(job: dict) -> tuple:
    """What identifies a (dataset, method, setting) row, in a job or a results.csv record."""
    tap = job.get("target_accept_prob")
    return job["dataset"], job["method"], None if tap is None or tap != tap else float(tap)


def snorkel_available() -> bool:
    try:
        import snorkel.labeling.model  # noqa: F401
        return True
    except Exception:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--real", nargs="*", default=["sst2", "agnews"])
    ap.add_argument("--crowds", nargs="*", default=CROWDS, help="sparse crowd datasets crowd:N:annotators:K:per_item")
    ap.add_argument("--no-nuts", action="store_true")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per (dataset, method)")
    ap.add_argument("--out", default="experiments/results/bench_aggregation")
    ap.add_argument("--only", nargs="*", help="run only datasets starting with these prefixes and merge the rows "
                                              "into the existing results.csv (e.g. --only switching real)")
    ap.add_argument("--methods", nargs="*", help="run only methods starting with these prefixes (with --only: in "
                                                 "those datasets) and merge the rows into the existing results.csv")
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:
        print("RESULT " + json.dumps(child(json.loads(args.job))))
        return
    import pandas as pd
    from tqdm.auto import tqdm
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [j for j in jobs(args.sizes, args.real, not args.no_nuts, args.crowds)
            if snorkel_available() or not j["method"].startswith("snorkel")]
    rows = []
    if args.only or args.methods:
        datasets, methods = tuple(args.only or [""]), tuple(args.methods or [""])
        todo = [j for j in todo if j["dataset"].startswith(datasets) and j["method"].startswith(methods)]
        if (out / "results.csv").exists():      # keep every old row that this run does not redo
            redo = {job_key(j) for j in todo}
            rows = [r for r in pd.read_csv(out / "results.csv").to_dict("records") if job_key(r) not in redo]
    for job in tqdm(todo, desc="aggregation benchmark"):
        try:
            proc = subprocess.run([sys.executable, __file__, "--job", json.dumps(job)], capture_output=True,
                                  text=True, timeout=args.timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            rows.append(json.loads(lines[-1][7:]) if lines else {**job, "error": proc.stderr.strip()[-300:]})
        except subprocess.TimeoutExpired:
            rows.append({**job, "error": f"timeout after {args.timeout} s"})
        pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    order = {job_key(j): i for i, j in enumerate(jobs(args.sizes, args.real, True, args.crowds))}
    rows.sort(key=lambda r: order.get(job_key(r), len(order)))     # merged rows back in job order
    command = " ".join(["python", "experiments/bench_aggregation.py", *sys.argv[1:]])
    log = out / "commands.txt"          # an --only / --methods rerun adds its command to the ones it merged with
    commands = log.read_text().splitlines() if (args.only or args.methods) and log.exists() else []
    commands = [c for c in commands if c != command] + [command]
    log.write_text("\n".join(commands) + "\n")
    write_report(pd.DataFrame(rows), out, "\n".join(commands))


def write_report(df, out: Path, command: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    df.to_csv(out / "results.csv", index=False)
    cols = ["method", "seconds", "peak_mb", "accuracy", "log_loss", "ece"]
    lines = ["# Label aggregation: bayes_w2s vs crowd-kit and Snorkel", "",
             f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}. "
             "Each row is one fresh process; time and peak memory cover the fit only "
             "(input conversion from the DataFrame or array included).", ""]
    for dataset, part in df.groupby("dataset", sort=False):
        lines += [f"## {dataset}", "", "| " + " | ".join(cols + ["notes"]) + " |", "|" + "---|" * (len(cols) + 1)]
        for _, r in part.iterrows():
            if isinstance(r.get("error"), str):
                lines.append(f"| {r['method']} | – | – | – | – | – | {r['error'][:120]} |")
                continue
            notes = ""
            if "max_rhat" in r and r.get("max_rhat") == r.get("max_rhat"):
                notes = (f"target_accept {r['target_accept_prob'] if r.get('target_accept_prob') == r.get('target_accept_prob') else 0.8}, "
                         f"R-hat {r['max_rhat']:.4f}, bulk ESS {r['min_ess_bulk']:.0f}, "
                         f"divergences {int(r['divergences'])}, sampling {r['sampling_seconds']:.1f} s")
            lines.append(f"| {r['method']} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | {100 * r['accuracy']:.2f} | "
                         f"{r['log_loss']:.4f} | {100 * r['ece']:.2f} | {notes} |")
        lines.append("")
    lines += ["seconds = wall time of the fit; peak_mb = peak resident memory above the process's level before "
              "the fit; accuracy and ECE in %.", "", "```", command, "```"]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    syn = df[df["dataset"].str.startswith("synthetic") & df["seconds"].notna()].copy()
    if len(syn):
        syn["n"] = syn["dataset"].str.split(":").str[1].astype(int)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method, part in syn.groupby("method"):
            part = part.sort_values("n")
            ax.plot(part["n"], part["seconds"], marker="o", label=method,
                    linestyle="-" if method.startswith("bayes") else "--")
        ax.set(xscale="log", yscale="log", xlabel="items (5 weak models, 4 classes)", ylabel="wall time (s)",
               title="Aggregation time on synthetic votes")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "time_vs_items.png", dpi=120)


if __name__ == "__main__":
    main()
