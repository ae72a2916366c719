"""Results tables (CSV, Markdown), the plot of the headline metric (accuracy for
classification, SLU-F1 for generation) and, for classification, a reliability diagram of
every row's test predictions."""
from __future__ import annotations

import json
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..io import UnreadableCacheWarning, atomic_path, write_text
from ..metrics import confidence_bins, pgr

#: row kinds in table order; ``oracle`` rows saw hidden references (diagnostics, never a method's result)
ORDER = {"weak": 0, "weak_ensemble": 1, "student": 2, "oracle": 3, "ceiling": 4}


#: per headline metric: the weak-ensemble row PGR is also measured against
VOTE_ROW = {"accuracy": "weak_vote", "slu_f1": "weak_rover"}
METRIC_LABEL = {"accuracy": "test acc (%)", "slu_f1": "test SLU-F1 (%)"}
EXTRA_COLUMNS = {"accuracy": [("ece", "ECE (%)"), ("label_accuracy", "target acc on strong_train (%)"),
                              ("label_ece", "target ECE (%)"), ("label_log_loss", "target log-loss")],
                 "slu_f1": [("exact_match", "exact match (%)"), ("slu_precision", "SLU prec. (%)"),
                            ("slu_recall", "SLU rec. (%)"), ("malformed", "malformed (%)"),
                            ("no_slots", "`{}` outputs (%)"),
                            ("label_slu_f1", "target SLU-F1 on strong_train (%)"),
                            ("pair_accuracy", "pairs: chosen truly better (%)"), ("mean_p", "pairs: mean p (%)"),
                            ("chosen_empty", "pairs: chosen `{}` (%)"), ("rejected_empty", "pairs: rejected `{}` (%)")]}


def add_pgr(results: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Per-seed PGR of every student against three weak references:
    ``pgr_mean_weak`` (mean score of the weak models), ``pgr_best_weak`` (the best
    weak model on test) and ``pgr_vote`` (the weak ensemble's majority vote; ROVER for
    generation)."""
    rows = []
    for seed, df in results.groupby("seed"):
        score = df.set_index("method")[metric]
        weak = df[df["kind"] == "weak"][metric]
        ceiling = df[df["kind"] == "ceiling"][metric]
        refs = {"pgr_mean_weak": weak.mean(), "pgr_best_weak": weak.max(),
                "pgr_vote": score.get(VOTE_ROW[metric], np.nan)}
        for _, r in df.iterrows():
            r = r.copy()
            for col, ref in refs.items():
                r[col] = pgr(r[metric], ref, ceiling.iloc[0]) if len(ceiling) and r["kind"] == "student" else np.nan
            rows.append(r)
    return pd.DataFrame(rows)


def summarise(results: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Mean ± sd over seeds per method."""
    metrics = [c for c in (metric, *(c for c, _ in EXTRA_COLUMNS[metric]), "pgr_mean_weak", "pgr_best_weak",
                           "pgr_vote") if c in results]
    g = results.groupby(["kind", "method"], sort=False)[metrics]
    summary = g.mean().join(g.std(ddof=1), rsuffix="_sd").reset_index()
    counts = results.groupby(["kind", "method"], sort=False)[metric].count() if metric in results else g.size()
    summary["n_seeds"] = counts.values   # seeds with a score (a NaN row is not one)
    summary["order"] = summary["kind"].map(ORDER)
    return summary.sort_values(["order"], kind="stable").drop(columns="order")


def _wall_time(meta: dict) -> str:
    """This run's wall time, or, when seeds were resumed from an earlier run, each seed's."""
    per_seed = {int(k): v for k, v in meta.get("seed_wall_seconds", {}).items() if not pd.isna(v)}
    seeds = meta.get("config", {}).get("seeds", [])
    if per_seed and len(per_seed) == len(seeds) and sum(per_seed.values()) > meta["wall_seconds"] + 60:
        return (f"{sum(per_seed.values()) / 60:.1f} min over resumed runs ("
                + ", ".join(f"seed {k}: {v / 60:.1f} min" for k, v in sorted(per_seed.items())) + ")")
    return f"{meta['wall_seconds'] / 60:.1f} min"


#: columns reported as they are, not as percentages
RAW_COLUMNS = {"label_log_loss"}


def _fmt(mean, sd, pct=True):
    if pd.isna(mean):
        return "–"
    scale, digits = (100, 1) if pct else (1, 3)
    return f"{mean * scale:.{digits}f} ± {sd * scale:.{digits}f}" if not pd.isna(sd) else f"{mean * scale:.{digits}f}"


def markdown_table(summary: pd.DataFrame, metric: str = "accuracy") -> str:
    cols = [(metric, METRIC_LABEL[metric]), *EXTRA_COLUMNS[metric], ("pgr_mean_weak", "PGR vs mean weak (%)"),
            ("pgr_best_weak", "PGR vs best weak (%)"),
            ("pgr_vote", "PGR vs vote (%)" if metric == "accuracy" else "PGR vs ROVER (%)")]
    cols = [(c, h) for c, h in cols if c in summary]
    lines = ["| method | kind | " + " | ".join(h for _, h in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for _, r in summary.iterrows():
        method = str(r["method"]).replace("|", "\\|")    # a | in a name would open another column
        lines.append(f"| {method} | {r['kind']} | " +
                     " | ".join(_fmt(r[c], r.get(f"{c}_sd"), c not in RAW_COLUMNS) for c, _ in cols) + " |")
    return "\n".join(lines)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_accuracy(summary: pd.DataFrame, path: Path, title: str = "", metric: str = "accuracy") -> None:
    plt = _pyplot()
    students = summary[summary["kind"] == "student"]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(students) + 2) + 2.2, 4.2))
    x = np.arange(len(students))
    ax.bar(x, students[metric] * 100, yerr=students.get(f"{metric}_sd", 0) * 100, color="#4c72b0", capsize=3)
    ax.set_xticks(x, students["method"], rotation=30, ha="right")
    vote = VOTE_ROW[metric]
    styles = {"ceiling": ("k", "-"), vote: ("#c44e52", "--"), "best weak": ("#dd8452", ":"), "mean weak": ("#8c8c8c", "-.")}
    levels = {"ceiling": summary.loc[summary["kind"] == "ceiling", metric],
              vote: summary.loc[summary["method"] == vote, metric],
              "best weak": summary.loc[summary["kind"] == "weak", metric].max(),
              "mean weak": summary.loc[summary["kind"] == "weak", metric].mean()}
    for label, val in levels.items():
        val = float(val.iloc[0]) if hasattr(val, "iloc") and len(val) else (float(val) if not hasattr(val, "iloc") else np.nan)
        if not np.isnan(val):
            c, ls = styles[label]
            ax.axhline(val * 100, color=c, ls=ls, lw=1.5, label=f"{label} ({val * 100:.1f})")
    lo = min(summary[metric].min() * 100, (students[metric].min() * 100) if len(students) else 100)
    ax.set_ylim(max(0, lo - 5), min(100, summary[metric].max() * 100 + 3))
    ax.set_ylabel(METRIC_LABEL[metric])
    ax.set_title(title)
    # outside the axes, so no bar is hidden behind it
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def calibration_bins(probs, labels, n_bins: int = 10) -> pd.DataFrame:
    """Per equal-width confidence bin (confidence = max probability): item count, mean
    confidence and accuracy — the numbers behind a reliability diagram and the ECE."""
    conf, correct, which = confidence_bins(probs, labels, n_bins)
    rows = [{"bin": b, "lower": b / n_bins, "upper": (b + 1) / n_bins, "count": int((which == b).sum()),
             "confidence": conf[which == b].mean() if (which == b).any() else np.nan,
             "accuracy": correct[which == b].mean() if (which == b).any() else np.nan} for b in range(n_bins)]
    return pd.DataFrame(rows)


def reliability_diagram(probs: dict, labels, path: Path, title: str = "", n_bins: int = 10,
                        columns: int = 5) -> Path:
    """A reliability diagram per row (``probs``: name → ``[N, K]`` test probabilities, all
    for the items of ``labels``): accuracy against confidence in equal-width bins, the
    diagonal is perfect calibration, the red part of each bar the gap to it; each panel's
    title gives the ECE with these bins and the accuracy."""
    from ..metrics import accuracy, expected_calibration_error

    plt = _pyplot()
    names = list(probs)
    rows = int(np.ceil(len(names) / columns))
    fig, axes = plt.subplots(rows, min(columns, len(names)), figsize=(2.6 * min(columns, len(names)), 2.6 * rows + 0.4),
                             sharex=True, sharey=True, squeeze=False)
    width = 1.0 / n_bins
    for ax, name in zip(axes.flat, names):
        bins = calibration_bins(probs[name], labels, n_bins)
        seen = bins["count"] > 0
        ax.bar(bins["lower"][seen], bins["accuracy"][seen], width=width, align="edge", color="#4c72b0",
               edgecolor="white", label="accuracy")
        gap_lo = np.minimum(bins["accuracy"], bins["confidence"])[seen]
        ax.bar(bins["lower"][seen], (bins["confidence"] - bins["accuracy"]).abs()[seen], bottom=gap_lo, width=width,
               align="edge", color="#c44e52", alpha=0.45, label="gap to confidence")
        ax.plot([0, 1], [0, 1], color="k", lw=1, ls="--")
        ece = expected_calibration_error(probs[name], labels, n_bins)
        ax.set_title(f"{name}\nacc {accuracy(probs[name], labels) * 100:.1f}, ECE {ece * 100:.1f}", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("confidence", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy", fontsize=8)
    axes.flat[0].legend(fontsize=6, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def load_test_probs(out: Path, seeds=None, prefix: str = "test_probs") -> tuple[dict, np.ndarray] | None:
    """The pipeline's ``<prefix>_seed<s>.npz`` files of a results folder (test predictions,
    or ``target_probs``: the training targets on strong_train), pooled over seeds:
    ``({row name: [seeds · N, K]}, labels [seeds · N])``; ``None`` when there are none."""
    name = re.compile(rf"^{re.escape(prefix)}_seed(0|[1-9]\d*)\.npz$")   # not a copy such as ..._seed0.bak.npz
    files = [f for f in sorted(Path(out).iterdir()) if (m := name.match(f.name))
             and (seeds is None or int(m.group(1)) in set(seeds))]
    pooled, labels = {}, []
    for f in files:
        try:
            with np.load(f, allow_pickle=False) as z:
                seed_rows = {str(n): p for n, p in zip(z["methods"], z["probs"])}
                seed_labels = z["labels"]
            shapes = {p.shape for p in seed_rows.values()}
            widths = {s[-1] if s else None for s in shapes}
            earlier = {next(iter(pooled.values()))[0].shape[1]} if pooled else widths   # the seeds read so far
            if seed_labels.ndim != 1 or any(len(s) != 2 or s[0] != len(seed_labels) for s in shapes) \
                    or len(widths) > 1 or widths != earlier:
                raise ValueError(f"probabilities of shapes {sorted(shapes)} for {len(seed_labels)} labels, or "
                                 "another class count than the other seeds'")
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            # only the plots read these: a damaged one costs its seed's share of a diagram, not the report
            warnings.warn(f"{f} is unreadable ({type(exc).__name__}: {exc}); the reliability diagram leaves "
                          "that seed out", UnreadableCacheWarning, stacklevel=2)
            continue
        for row, p in seed_rows.items():
            pooled.setdefault(row, []).append(p)
        labels.append(seed_labels)
    if not labels:
        return None
    keep = {n: np.concatenate(p) for n, p in pooled.items() if len(p) == len(labels)}   # rows of every seed
    return keep, np.concatenate(labels)


def _title(cfg: dict) -> str:
    return (f"{cfg['task']}: weak {', '.join(Path(m).stem for m in cfg['weak_models'])} → strong "
            f"{Path(cfg['strong_model']).stem}")


def draw_plots(results: pd.DataFrame, meta: dict, out: Path) -> list[Path]:
    """The headline-metric bar chart and, when test probabilities were saved, the reliability
    diagram (classification); returns the files written."""
    out, metric, cfg = Path(out), meta.get("metric", "accuracy"), meta["config"]
    plot_name = "accuracy.png" if metric == "accuracy" else f"{metric}.png"
    plot_accuracy(summarise(add_pgr(results, metric), metric), out / plot_name, _title(cfg), metric)
    written = [out / plot_name]
    saved = load_test_probs(out, cfg.get("seeds")) if metric == "accuracy" else None
    if saved is not None:
        probs, labels = saved
        written.append(reliability_diagram(probs, labels, out / "reliability.png",
                                           f"{_title(cfg)} — test predictions, seeds {cfg.get('seeds')} pooled"))
    targets = load_test_probs(out, cfg.get("seeds"), "target_probs") if metric == "accuracy" else None
    if targets is not None:
        probs, labels = targets
        written.append(reliability_diagram(probs, labels, out / "target_reliability.png",
                                           f"{_title(cfg)} — training targets on strong_train, seeds "
                                           f"{cfg.get('seeds')} pooled"))
    return written


def redraw_plots(folder) -> list[Path]:
    """Redraw a results folder's plots from its ``results.csv``, ``meta.json`` and (for the
    reliability diagram) ``test_probs_seed*.npz`` — e.g. after the plotting code changed."""
    from ..errors import InvalidInputError

    folder = Path(folder)
    missing = [f for f in ("results.csv", "meta.json") if not (folder / f).is_file()]
    if missing:
        raise InvalidInputError(f"{folder} is not a results folder (no {', '.join(missing)})")
    try:
        # only empty cells are missing: a method named "N/A" or "None" stays a name
        results = pd.read_csv(folder / "results.csv", keep_default_na=False, na_values=[""])
        meta = json.loads((folder / "meta.json").read_text())
    except (ValueError, UnicodeDecodeError) as exc:   # pandas' EmptyDataError / ParserError and JSON's are ValueErrors
        raise InvalidInputError(f"{folder} holds an unreadable results.csv or meta.json ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0]})") from None
    check_results(results, meta, f"{folder}: ")
    return draw_plots(results, meta, folder)


def check_results(results: pd.DataFrame, meta, where: str = "") -> None:
    """What the table, PGR and plots read: rows with seed, method, kind and the metric, one
    per (seed, method), and a meta with the config's name, task and weak models."""
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise InvalidInputError(f"{where}meta.json must be an object with a 'config' object")
    metric = meta.get("metric", "accuracy")
    absent = [k for k in ("name", "task", "weak_models") if k not in meta["config"]]
    if absent:
        raise InvalidInputError(f"{where}meta.json's config lacks {absent}")
    columns = [c for c in ("seed", "method", "kind", metric) if c not in results.columns]
    if columns:
        raise InvalidInputError(f"{where}results lack the column(s) {columns} (metric {metric!r})")
    if results.empty:
        raise InvalidInputError(f"{where}no results to report: the table has no rows")
    not_numbers = [c for c in ("seed", metric) if not pd.api.types.is_numeric_dtype(results[c])]
    if not_numbers:
        raise InvalidInputError(f"{where}the column(s) {not_numbers} hold values that are not numbers")
    repeated = results.duplicated(["seed", "method"])
    if repeated.any():
        first = results[repeated].iloc[0]
        raise InvalidInputError(f"{where}results hold method {first['method']!r} of seed {first['seed']} more than once")


def _gap_warning(summary: pd.DataFrame, metric: str = "accuracy") -> list[str]:
    ceiling = summary.loc[summary["kind"] == "ceiling", metric]
    best_weak = summary.loc[summary["kind"] == "weak", metric].max()
    if len(ceiling) and ceiling.iloc[0] <= best_weak:
        return [f"**The ceiling ({ceiling.iloc[0] * 100:.1f}) does not beat the best weak model "
                f"({best_weak * 100:.1f})**: there is no gap to recover, so PGR against it is meaningless "
                "(negative gaps are shown as –). Choose a stronger student or weaker supervisors.", ""]
    return []


def table_notes(results: pd.DataFrame, cfg: dict, metric: str) -> str:
    """The paragraph under the table: what PGR and the target columns mean, and, for
    generation, each preference row's and decoding row's settings."""
    if metric == "accuracy":
        notes = ("PGR = (student − weak) / (ceiling − weak), per seed, against the mean weak model, the best weak "
                 "model on test, and the weak ensemble's majority vote. *target acc / ECE / log-loss* score "
                 "the training targets themselves on strong_train's (hidden) ground truth (log-loss: mean −log "
                 "p(true class)). `best_weak` targets come "
                 "from the weak model with the highest test accuracy in each seed (here: "
                 f"{', '.join(sorted(set(results['best_weak'])))}). ECE uses 15 equal-width bins.")
        if "posterior_chosen" in results and results["posterior_chosen"].notna().any():
            chosen = results.dropna(subset=["posterior_chosen"]).sort_values("seed").groupby("method", sort=False)
            notes += (" Posteriors chosen on the gold slice (`posterior:auto`), seed by seed: "
                      + "; ".join(f"{name}: {', '.join(f'`{c}`' for c in df['posterior_chosen'])}"
                                  for name, df in chosen) + ".")
    else:
        notes = ("SLU-F1 as SLURP's official evaluation (word- and character-level span distances, summed), "
                 "on the JSON slot targets of the test split; *malformed* = generations that are not a JSON object "
                 "of slot fillers (scored as no slots). PGR = (student − weak) / (ceiling − weak) per seed, against "
                 "the mean weak generator, the best one on test and ROVER (the word_reliability consensus of the "
                 "weak 1-best outputs, its reliabilities fitted on strong_train and applied to test, kept "
                 "well-formed). *target SLU-F1* scores the training targets on strong_train's hidden "
                 "references. `best_weak` = the weak generator with the highest test SLU-F1 in each seed (here: "
                 f"{', '.join(sorted(set(results['best_weak'])))}).")
    stages = [f"`{m['name']}`: {m['preference']['loss']}"
              + (f", β = {m['preference']['beta']}" if m['preference']['loss'] != "best_of_n" else "")
              + (f", ε = {m['preference']['epsilon']}" if m['preference']['loss'] in ("cdpo", "robust") else "")
              + f", N = {m['preference']['n_candidates']}, {m['preference']['ranker']} ranker, "
              f"{m['preference']['max_items'] or 'all'} prompts, {m['preference']['epochs']} epoch(s), "
              f"lr {m['preference']['learning_rate']} ({m['preference']['mode']})"
              + (f", pairs with p ≥ {m['preference']['min_p']}" if m['preference'].get('min_p') else "")
              + (f", SFT term α = {m['preference']['sft_weight']}" if m['preference'].get('sft_weight') else "")
              + (", rejected = the student's top candidate where it is not the best"
                 if m['preference'].get('rejected', 'worst') == "top" else "")
              for m in cfg.get("methods", []) if m.get("preference")]
    decoding = [f"`{m['name']}`: " + ("constrained" if m['decoding']['constrained'] else "free")
                + f", {m['decoding']['no_slot']} no-slot"
                + (f" (rate {m['decoding']['no_slot_rate']})" if m['decoding'].get('no_slot_rate') is not None else "")
                for m in cfg.get("methods", []) if m.get("decoding")]
    if stages:
        notes += (" Preference rows start from the SFT student of the same targets (trained once) and learn "
                  "(chosen, rejected) = the best and the worst of its N-best under the ranker (unless a row says "
                  "otherwise); *pairs: chosen truly "
                  "better* checks each pair against strong_train's hidden reference (ties count half); *mean p* is "
                  "the word posterior's probability that chosen beats rejected (per-pair ε = 1 − p). Settings: "
                  + "; ".join(stages) + ".")
    if decoding:
        notes += (" Decoding (test outputs; rows without a setting decode greedily, free): *constrained* = only "
                  "well-formed slot JSON, keys among the task's slot types, fillers runs of the utterance's words; "
                  "*calibrated no-slot* = `{}` for the items whose P(`{}`) under the student passes the threshold "
                  "that gives `{}` to as many strong_train items as the word posterior expects, the rest decoded "
                  "with `{}` forbidden. " + "; ".join(decoding) + ".")
    return notes


def write_report(results: pd.DataFrame, meta: dict, out: Path) -> None:
    """``results.csv``, the plot, ``results.md`` and ``meta.json`` in ``out``, each written
    by temp-and-rename (a crash leaves the previous file or the new one, never half)."""
    out = Path(out)
    metric = meta.get("metric", "accuracy")
    check_results(results, meta)
    results = add_pgr(results, metric)
    with atomic_path(out / "results.csv") as tmp:
        results.to_csv(tmp, index=False)
    summary = summarise(results, metric)
    cfg = meta["config"]
    plot_name = "accuracy.png" if metric == "accuracy" else f"{metric}.png"
    plots = draw_plots(results, meta, out)
    notes = table_notes(results, cfg, metric)
    modes = f"mode `{cfg['weak_train']['mode']}`" + (
        f", overrides {cfg['weak_overrides']}" if cfg.get("weak_overrides") else "")
    md = [f"# {cfg['name']}", "",
          f"Task **{cfg['task']}** (data: `{meta['data_source']}`), split sizes {meta['split_sizes']} "
          f"(split seed {cfg['split_seed']}"
          + (f"; the weak models learn from a stratified {cfg['weak_label_budget']}-item subset of a "
             f"{cfg['sizes']['weak_train']}-item weak_train draw" if cfg.get("weak_label_budget") else "")
          + f"); training seeds {cfg['seeds']} — mean ± sd over seeds.",
          f"Weak models: {', '.join(cfg['weak_models'])} ({modes}); "
          f"strong student: {cfg['strong_model']} (mode `{cfg['student_train']['mode']}`).", "",
          markdown_table(summary, metric), "",
          *_gap_warning(summary, metric),
          notes, "",
          f"![{metric} per method]({plot_name})", "",
          *(["Reliability of every row's test predictions (seeds pooled; 10 equal-width confidence bins, so the "
             "ECE in each panel differs from the table's 15-bin ECE):", "", "![reliability diagrams](reliability.png)", ""]
            if any(p.name == "reliability.png" for p in plots) else []),
          *(["Reliability of the training targets themselves on strong_train's hidden truth (every distinct "
             "target source; seeds pooled; 10 bins):", "", "![target reliability](target_reliability.png)", ""]
            if any(p.name == "target_reliability.png" for p in plots) else []),
          f"Wall time: {_wall_time(meta)} on {meta['machine']}"
          f"{' in ' + str(meta['processes']) + ' processes' if meta.get('processes', 1) > 1 else ''} "
          f"(Python {meta['python']}).", "",
          "Reproduce:", "", "```", meta.get("command") or "(command not recorded)", "```", ""]
    write_text(out / "results.md", "\n".join(md))
    write_text(out / "meta.json", json.dumps(meta, indent=2, default=str))
