import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Dataset

from bayes_w2s import TrainConfig, WeakLabels, fit_posterior, train_student
from bayes_w2s.errors import InvalidInputError, LabelSetMismatchError, UnknownNameError
from bayes_w2s.training import ClassifierTrainer, Classifier


@pytest.fixture()
def toy(toy_texts):
    texts, labels = toy_texts
    return Dataset.from_dict({"text": texts, "label": labels, "id": [str(i) for i in range(len(texts))]})


@pytest.mark.parametrize("mode", ["head", "lora", "full"])
def test_modes_learn_a_separable_toy_task(tiny_encoder, toy, mode):
    cfg = TrainConfig(mode=mode, epochs=8 if mode == "head" else 6, batch_size=8,
                      learning_rate=1e-2 if mode == "head" else 3e-3)
    student = train_student(tiny_encoder, toy, np.array(toy["label"]), label_names=["cat", "dog"], config=cfg)
    acc = (student.predict(toy) == np.array(toy["label"])).mean()
    assert acc >= 0.9, f"{mode}: {acc}"
    assert np.allclose(student.predict_proba(toy).sum(1), 1, atol=1e-5)


def test_lora_trains_only_adapters_and_head_then_merges(tiny_encoder, toy):
    clf = Classifier(tiny_encoder, 2, TrainConfig(mode="lora", epochs=1, batch_size=8))
    clf._ensure_model()
    trainable = {n for n, p in clf.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head") for n in trainable)
    # parameters LoRA does not adapt (embeddings, LayerNorm, biases) must come out unchanged
    plain = lambda n: n.replace("base_model.model.", "").replace(".base_layer", "")
    before = {plain(n): p.detach().clone() for n, p in clf.model.named_parameters() if "lora_" not in n}
    clf.fit(list(toy["text"]), np.eye(2)[toy["label"]], lambda z, b, p: torch.nn.functional.cross_entropy(z, b["target_probs"]))
    after = dict(clf.model.named_parameters())
    assert not any("lora_" in n for n in after) and set(after) == set(before)     # merged: a plain model again
    for name, p in after.items():
        linear = name.endswith(".weight") and any(k in name for k in ("query", "key", "value", "dense"))
        adapted = name.startswith("head") or (linear and "pooler" not in name)      # the pooler is excluded
        assert torch.equal(before[name], p.detach()) != adapted, name


@pytest.mark.parametrize("loss", ["xent", "weighted_xent", "aux_conf", "multi_weak", "edl"])
def test_every_loss_trains_from_weak_or_posterior_targets(tiny_encoder, toy, loss):
    rng = np.random.default_rng(0)
    y = np.array(toy["label"])
    probs = np.stack([np.where(rng.random(len(y)) < acc, y, 1 - y) for acc in (0.9, 0.8, 0.75)], 1)
    wl = WeakLabels(np.eye(2)[probs] * 0.8 + 0.1, ["a", "b", "c"], ["cat", "dog"])
    targets = {"weighted_xent": fit_posterior(wl), "multi_weak": wl}.get(loss, fit_posterior(wl))
    student = train_student(tiny_encoder, toy, targets, loss, config=TrainConfig(epochs=8, batch_size=8, learning_rate=1e-2))
    assert (student.predict(toy) == y).mean() >= 0.85
    assert student.loss == loss and np.isfinite(student.history[-1]["train_loss"])


def test_trainer_is_a_transformers_trainer():
    from transformers import Trainer
    assert issubclass(ClassifierTrainer, Trainer)


def test_errors(tiny_encoder, toy):
    y = np.array(toy["label"])
    with pytest.raises(InvalidInputError, match="label_names"):
        train_student(tiny_encoder, toy, y)
    with pytest.raises(InvalidInputError, match="expected \\(48, 2\\)"):
        train_student(tiny_encoder, toy, np.eye(2)[y[:10]], label_names=["a", "b"])
    with pytest.raises(InvalidInputError, match="sum to 1"):
        train_student(tiny_encoder, toy, np.full((48, 2), 0.7), label_names=["a", "b"])
    with pytest.raises(InvalidInputError, match="NaN"):
        train_student(tiny_encoder, toy, np.full((48, 2), np.nan), label_names=["a", "b"])
    with pytest.raises(InvalidInputError, match="needs per-item weights"):
        train_student(tiny_encoder, toy, np.eye(2)[y], "weighted_xent", label_names=["a", "b"])
    with pytest.raises(InvalidInputError, match="needs every weak model"):
        train_student(tiny_encoder, toy, np.eye(2)[y], "multi_weak", label_names=["a", "b"])
    with pytest.raises(InvalidInputError, match="empty"):
        train_student(tiny_encoder, toy.select([]), y[:0], label_names=["a", "b"])
    wl = WeakLabels(np.full((48, 2, 3), 1 / 3), ["a", "b"], ["x", "y", "z"])
    with pytest.raises(LabelSetMismatchError, match="classes"):
        train_student(tiny_encoder, toy, wl, label_names=["cat", "dog"])
    with pytest.raises(InvalidInputError, match="unknown training mode"):
        TrainConfig(mode="qlora")
    other = WeakLabels(np.full((48, 3, 2), 1 / 2), ["x", "y", "z"], ["a", "b"], item_ids=[f"t{i}" for i in range(48)])
    with pytest.raises(InvalidInputError, match="the targets are for other items than train_data"):
        train_student(tiny_encoder, toy, other, label_names=["a", "b"])


def test_train_data_that_is_not_a_text_dataset_is_a_clear_error(tiny_encoder, toy):
    y = np.eye(2)[np.array(toy["label"])]
    with pytest.raises(InvalidInputError, match="train_data must be a datasets.Dataset with a 'text' column"):
        train_student(tiny_encoder, list(toy["text"]), y, label_names=["a", "b"])
    with pytest.raises(InvalidInputError, match="train_data has no 'text' column"):
        train_student(tiny_encoder, toy.rename_column("text", "sentence"), y, label_names=["a", "b"])
    with pytest.raises(InvalidInputError, match="train_data text 0 is None, not a string"):
        train_student(tiny_encoder, Dataset.from_dict({"text": [None, "x"], "label": [0, 1]}), y[:2],
                      label_names=["a", "b"])


def test_weights_a_loss_does_not_use_are_warned_about(tiny_encoder, toy):
    y = np.array(toy["label"])
    with pytest.warns(UserWarning, match="loss 'xent' takes no per-item weights"):
        train_student(tiny_encoder, toy, np.eye(2)[y], "xent", label_names=["a", "b"], weights=np.ones(48),
                      config=TrainConfig(mode="head", epochs=1, batch_size=16))


@pytest.mark.parametrize("mode", ["head", "lora", "full"])
def test_save_pretrained_round_trips_with_identical_predictions(tiny_encoder, toy, tmp_path, mode):
    from transformers import AutoModelForSequenceClassification

    from bayes_w2s import Student
    from bayes_w2s.backbones import PooledClassifier

    cfg = TrainConfig(mode=mode, epochs=1, batch_size=8, learning_rate=1e-2 if mode == "head" else 3e-3)
    student = train_student(tiny_encoder, toy, np.array(toy["label"]), "edl", label_names=["cat", "dog"], config=cfg,
                            loss_kwargs={"kl_max": 0.5})
    student.save_pretrained(tmp_path / "s")
    files = {p.name for p in (tmp_path / "s").iterdir()}
    assert {"config.json", "model.safetensors", "trainer_history.json"} <= files
    assert ("tokenizer.json" in files) == (mode != "head")            # a head-only student reads features
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)  # safetensors only, no pickle
    again = Student.from_pretrained(tmp_path / "s")
    assert np.array_equal(again.predict_proba(toy), student.predict_proba(toy))   # EDL's Dirichlet mean, too
    assert (again.loss, again.loss_kwargs, again.label_names) == ("edl", {"kl_max": 0.5}, ["cat", "dog"])
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s")       # a plain transformers model
    assert isinstance(hf, PooledClassifier) and hf.config.id2label == {0: "cat", 1: "dog"}
    assert hf.config.head_only == (mode == "head")
    if mode == "head":   # bad inputs and damaged folders: project errors, not raw ones
        from bayes_w2s.errors import CorruptCacheError
        assert np.array_equal(again.predict_proba(np.array(toy["text"])), again.predict_proba(toy))
        assert again.predict_proba([]).shape == (0, 2)
        frame = pd.DataFrame({"text": toy["text"], "label": toy["label"]})   # list(frame) is its column names
        assert np.array_equal(again.predict_proba(frame), again.predict_proba(toy))
        assert np.array_equal(again.predict_proba({"text": toy["text"]}), again.predict_proba(toy))
        with pytest.raises(InvalidInputError, match="no 'text' column"):
            again.predict_proba(pd.DataFrame({"sentence": toy["text"]}))
        for bad, match in (("a text", "wrap a single text"), (["a", None], "got NoneType"), (["a", 5], "got int")):
            with pytest.raises(InvalidInputError, match=match):
                again.predict_proba(bad)
        import json
        config = json.loads((tmp_path / "s" / "config.json").read_text())
        config["student"]["train_config"]["report_to"] = "wandb"    # trained where wandb was; loaded where not
        (tmp_path / "s" / "config.json").write_text(json.dumps(config))
        assert Student.from_pretrained(tmp_path / "s").label_names == ["cat", "dog"]
        (tmp_path / "s" / "model.safetensors").write_bytes(b"not safetensors")
        with pytest.raises(CorruptCacheError, match="is not a loadable saved student"):
            Student.from_pretrained(tmp_path / "s")
        (tmp_path / "s" / "config.json").write_text("{not json")
        with pytest.raises(CorruptCacheError, match="is not a loadable saved student"):
            Student.from_pretrained(tmp_path / "s")


def test_head_initialisation_is_the_seeded_linear_layer():
    """The head draws exactly what nn.Linear draws under the seed (cached weak labels stay valid)."""
    from bayes_w2s.backbones import PooledClassifier, PooledClassifierConfig

    torch.manual_seed(3)
    expected = torch.nn.Linear(16, 3)
    torch.manual_seed(3)
    head = PooledClassifier(PooledClassifierConfig(hidden_size=16, head_only=True, num_labels=3)).head
    assert torch.equal(head.weight, expected.weight) and torch.equal(head.bias, expected.bias)


def test_a_folder_that_is_not_a_student_fails_clearly(tmp_path):
    from bayes_w2s import Student

    with pytest.raises(InvalidInputError, match="not a saved student"):
        Student.from_pretrained(tmp_path)


Y = np.arange(48) % 2
ONE_HOT = np.eye(2)[Y]

#: (train_student arguments beyond model and data, what the message must name)
BAD_ARGUMENTS = [
    (dict(targets=ONE_HOT, label_names=["a", "b"], loss_kwargs={"alpha_max": 0.5}), r"loss 'xent' has no setting\(s\) \['alpha_max'\]"),
    (dict(targets=ONE_HOT, label_names=["a", "b"], loss="aux_conf", loss_kwargs={"alpha": 0.5}),
     r"loss 'aux_conf' has no setting\(s\) \['alpha'\] \(loss_kwargs\); it takes \['alpha_max', 'warmup'\]"),
    (dict(targets=ONE_HOT, label_names=["a", "b"], loss="aux_conf", loss_kwargs={"alpha_max": -3}), "alpha_max must be a number in"),
    (dict(targets=ONE_HOT, label_names=["a", "b"], loss="edl", loss_kwargs={"kl_max": float("inf")}), "kl_max must be"),
    (dict(targets=ONE_HOT, label_names=["a", "b"], loss="weighted_xent", weights=np.zeros(48)), "weights are all zero"),
    (dict(targets=ONE_HOT, label_names=["a", "b"], loss="weighted_xent", weights=-np.ones(48)), "finite non-negative"),
    (dict(targets=ONE_HOT, label_names=["a", "b"], config="head"), r"config must be a TrainConfig.*TrainConfig\(mode='head'\)"),
    (dict(targets=ONE_HOT, label_names=["a", "b"], loss_kwargs=[0.5]), "loss_kwargs must be a mapping"),
    (dict(targets=ONE_HOT, label_names=["a", "b"], seed=-1), r"seed must be an integer in \[0, 2\*\*32\)"),
    (dict(targets=ONE_HOT, label_names=["a", "b"], seed=2**32), r"seed must be an integer in \[0, 2\*\*32\)"),
    (dict(targets=ONE_HOT, label_names=["a", "b"], hard="yes"), "hard must be True or False"),
    (dict(targets=ONE_HOT, label_names="ab"), "label_names must be an ordered list of names, got str"),   # classes a, b
    (dict(targets=ONE_HOT, label_names=["a", "a"]), "label_names must be distinct"),
    (dict(targets=ONE_HOT, label_names=["a", "b"], loss="focal"), "unknown loss 'focal'"),
    (dict(targets=ONE_HOT, label_names=["a"]), "at least two classes"),
    (dict(targets=np.array(["a", "b"] * 24), label_names=["a", "b"]), "got dtype <U1"),
    (dict(targets=[[1.0, 0.0], [0.0]] * 24, label_names=["a", "b"]), r"\[N, K\] array"),
    (dict(targets=WeakLabels(np.full((48, 3, 2), 0.5), ["u", "v", "w"], ["a", "b"]), label_names=["a", "b"],
          loss="multi_weak", loss_kwargs={"lambdas": [1, 1]}), "2 multi-weak weights λ for 3 weak models"),
    (dict(targets=ONE_HOT, label_names=["a", "b"], config=TrainConfig(learning_rate=1.0)), None),   # accepted
]


@pytest.mark.parametrize("kwargs, match", BAD_ARGUMENTS, ids=[str(i) for i in range(len(BAD_ARGUMENTS))])
def test_bad_arguments_fail_before_training(tiny_encoder, toy, monkeypatch, kwargs, match):
    monkeypatch.setattr(Classifier, "fit", lambda self, *a, **k: pytest.fail("trained despite bad arguments") if match
                        else self)
    if match is None:
        train_student(tiny_encoder, toy, **kwargs)
        return
    with pytest.raises((InvalidInputError, UnknownNameError), match=match):
        train_student(tiny_encoder, toy, **kwargs)


def test_hard_targets_keep_a_tie_instead_of_giving_it_to_the_first_class():
    from bayes_w2s.student.targets import resolve_targets

    vote = np.array([[0.5, 0.5, 0.0], [0.2, 0.7, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    hard = resolve_targets(vote, 3, ["a", "b", "c"], hard=True).probs
    np.testing.assert_allclose(hard, [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])


def test_weights_beyond_float32_or_not_numbers_are_refused():
    """1e308 passed as finite and trained a student that predicts NaN; strings were a raw ValueError."""
    from bayes_w2s.student import resolve_targets
    probs = np.full((4, 2), 0.5)
    for weights, match in (([1e308] * 4, "within float32"), (["a"] * 4, "weights must be 4 numbers")):
        with pytest.raises(InvalidInputError, match=match):
            resolve_targets(probs, 4, ["x", "y"], weights=weights)
    assert resolve_targets(probs, 4, ["x", "y"], weights=[1e30] * 4).weights.max() == 1e30


def test_a_run_of_one_step_moves_the_weights(tiny_encoder, toy):
    """transformers' warm-up rounded a fraction up to one whole step at lr 0: a one-step run
    (8 items, batch 8, one epoch) returned the starting weights."""
    clf = Classifier(tiny_encoder, 2, TrainConfig(mode="full", epochs=1, batch_size=8, learning_rate=1e-2,
                                                  warmup_ratio=0.05))
    clf._ensure_model()
    before = {n: p.detach().clone() for n, p in clf.model.named_parameters() if p.requires_grad}
    texts = list(toy["text"])[:8]
    clf.fit(texts, np.eye(2)[toy["label"][:8]], lambda z, b, p: torch.nn.functional.cross_entropy(z, b["target_probs"]))
    moved = [n for n, p in clf.model.named_parameters() if n in before and not torch.equal(before[n], p.detach())]
    assert moved, "one step at lr 0"


def test_features_that_never_varied_in_training_add_nothing(tiny_encoder):
    """One training item: every feature's std is 0, and a clamp to 1e-6 turned the new texts'
    feature differences into logits of ~1e5 (probabilities of exactly 0 / 1)."""
    one = Dataset.from_dict({"text": ["a great film"]})
    student = train_student(tiny_encoder, one, np.array([1]), label_names=["neg", "pos"],
                            config=TrainConfig(mode="head", epochs=1))
    probs = student.predict_proba(["a great film", "a terrible film", "hello"])
    assert probs.max() < 0.99 and np.allclose(probs, probs[0])
    from bayes_w2s.backbones import PooledClassifier
    model = student.classifier.model
    assert isinstance(model, PooledClassifier)
    # identical rows of large values: their float32 std is rounding residue (~1e-4), not 0
    feats = np.full((1000, model.feature_mean.numel()), 123.456, dtype=np.float32)
    model.set_feature_stats(feats.mean(0), feats.std(0), constant=feats.max(0) == feats.min(0))
    assert feats.std(0).max() > 1e-6 and torch.isinf(model.feature_scale).all()


def test_a_numpy_seed_reaches_training_as_an_int(tiny_encoder, toy, monkeypatch):
    """transformers' set_seed refused np.int64 after the backbone had loaded."""
    seen = {}

    def fit(self, *args, seed=0, **kwargs):
        seen["seed"] = seed
        return self

    monkeypatch.setattr(Classifier, "fit", fit)
    train_student(tiny_encoder, toy, ONE_HOT[:len(toy)], label_names=["a", "b"], seed=np.int64(3))
    assert seen["seed"] == 3 and type(seen["seed"]) is int
