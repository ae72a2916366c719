import numpy as np
import pandas as pd
import pytest

from bayes_w2s import WeakLabels, fit_posterior
from bayes_w2s.errors import InvalidInputError, LabelSetMismatchError, UnknownNameError


from .conftest import simulate_votes as simulate


def test_em_recovers_truth_and_confusions():
    truth, votes = simulate()
    post = fit_posterior(votes, model="dawid_skene", method="em")
    mv = np.array([np.bincount(r, minlength=4).argmax() for r in votes])
    assert (post.labels == truth).mean() > (mv == truth).mean()
    diag = np.einsum("mkk->mk", post.confusion).mean(1)
    assert np.all(diag > 0.5)                          # no label switching
    assert np.allclose(diag, [0.55, 0.6, 0.7, 0.75, 0.8], atol=0.05)
    assert post.converged and np.allclose(post.item_probs.sum(1), 1)
    assert np.all(np.diff(post.history) > -1e-6)       # MAP-EM never decreases its objective


def test_three_input_layouts_agree():
    truth, votes = simulate(n=300, k=3, accs=(0.6, 0.7, 0.8))
    a = fit_posterior(votes)
    long = pd.DataFrame([(n, f"w{m}", votes[n, m]) for n in range(300) for m in range(3)], columns=["task", "worker", "label"])
    b = fit_posterior(long)
    wl = WeakLabels(np.eye(3)[votes] * 0.9 + 0.1 / 3, ["w0", "w1", "w2"], ["x", "y", "z"])
    c = fit_posterior(wl)
    assert np.allclose(a.item_probs, b.item_probs, atol=1e-8) and np.allclose(a.item_probs, c.item_probs, atol=1e-8)


def test_abstentions_and_repeats():
    votes = np.array([[0, 0, -1], [1, -1, 1], [0, 1, 1], [1, 1, 0]])
    post = fit_posterior(votes, num_classes=2)
    assert post.item_probs.shape == (4, 2)
    long = pd.DataFrame({"task": [0, 0, 0, 1, 1], "worker": ["a", "a", "b", "a", "b"], "label": [1, 1, 0, 0, 0]})
    assert fit_posterior(long).item_probs.shape == (2, 2)


def test_errors():
    with pytest.raises(InvalidInputError, match="at least two weak models"):
        fit_posterior(np.zeros((5, 1), dtype=int))
    with pytest.raises(InvalidInputError, match="no label from any weak model"):
        fit_posterior(np.array([[0, 1], [-1, -1]]), num_classes=2)
    with pytest.raises(LabelSetMismatchError, match="outside the class set"):
        fit_posterior(np.array([[0, 5], [1, 1]]), num_classes=2)
    with pytest.raises(UnknownNameError, match="unknown posterior model"):
        fit_posterior(np.array([[0, 1], [1, 1]]), model="glad")
    with pytest.raises(UnknownNameError, match="no method 'gibbs'"):
        fit_posterior(np.array([[0, 1], [1, 1]]), method="gibbs")
    with pytest.raises(UnknownNameError, match="no method 'em'"):
        fit_posterior(np.array([[0, 1], [1, 1]]), model="hierarchical", method="em")
    with pytest.raises(InvalidInputError, match="observes each weak model's probabilities"):
        fit_posterior(np.array([[0, 1], [1, 1]]), model="soft")
    with pytest.raises(InvalidInputError, match="NaN"):
        WeakLabels(np.full((2, 2, 2), np.nan), ["a", "b"], ["x", "y"])
    with pytest.raises(InvalidInputError, match="do not sum to 1"):
        WeakLabels(np.full((2, 2, 2), 0.7), ["a", "b"], ["x", "y"])
    with pytest.raises(LabelSetMismatchError, match="weak labels are over"):
        fit_posterior(WeakLabels(np.full((2, 2, 2), 0.5), ["a", "b"], ["x", "y"]), label_names=["y", "x"])
    with pytest.raises(InvalidInputError, match=r"has no prior or em setting named \['beta'\]"):
        fit_posterior(np.array([[0, 1], [1, 1]]), beta=3.0)
    with pytest.raises(LabelSetMismatchError, match="not in the class set"):
        fit_posterior(pd.DataFrame({"task": [0], "worker": ["a"], "label": ["maybe"]}), label_names=["yes", "no"])


VOTES = np.array([[0, 1, 1], [1, 1, 0], [0, 0, 0], [1, 0, 1]])


def _long(labels, tasks=(0, 0, 1, 1, 2, 2), workers=("a", "b") * 3):
    return pd.DataFrame({"task": list(tasks)[:len(labels)], "worker": list(workers)[:len(labels)], "label": labels})


#: (labels, keyword arguments, error type, what the message must name)
BAD_INPUTS = [
    (VOTES, dict(num_classes=2, label_names=["a", "b", "c"]), LabelSetMismatchError, "3 label names for 2 classes"),
    (WeakLabels(np.full((2, 2, 2), 0.5), ["a", "b"], ["x", "y"]), dict(num_classes=3), LabelSetMismatchError,
     "num_classes=3"),
    (_long([0, "0", 1, 1, 0, 1]), {}, LabelSetMismatchError, "mix class indices and class names"),
    (_long(["pos", 1, "neg", 0, 1, 0]), {}, LabelSetMismatchError, "mix class indices and class names"),
    (_long([0, 1.5, 1, 1, 0, 1]), {}, InvalidInputError, "label 1.5 is neither"),
    (_long([0, None, 1, 1, 0, 1]), {}, InvalidInputError, "label missing .NaN. at row 1"),
    (_long([0, 5, 1, 1, 0, 1]), {}, LabelSetMismatchError, r"class\(es\) 2, 3, 4 never occur"),
    (_long(["a", "b", "a", "b", "a", "b"]), dict(num_classes=3), LabelSetMismatchError, "num_classes=3"),
    (_long([0, 1, 0, 1, 0, 1]).assign(worker=["a", None] * 3), {}, InvalidInputError, "column 'worker' must not"),
    (np.array([[0, 1], [1, 5], [0, 1]]), {}, LabelSetMismatchError, r"class\(es\) 2, 3, 4 never occur"),
    (np.array([[0, 1], [1, 5]]), {}, LabelSetMismatchError, "vote 5 implies 6 classes from only 4 votes"),
    (np.array([[0, 1], [1, 2**40]]), {}, LabelSetMismatchError, "implies 1099511627777 classes"),
    (np.array([[0, 1.5], [1, 0]]), {}, InvalidInputError, "integers .* got 1.5 at index .0, 1."),
    (np.array([[0, np.nan], [1, 0]]), {}, InvalidInputError, "got nan"),
    (np.array([["0", "1"], ["1", "0"]]), {}, InvalidInputError, "integers .* got dtype <U1"),
    ([[0, 1], [1, 0, 1]], {}, InvalidInputError, "rectangular"),
    ([[0, "a"], [1, 0]], {}, InvalidInputError, "integers"),
    ("0 1 1 0", {}, InvalidInputError, "got str"),
    (7, {}, InvalidInputError, "got int 7"),
    (np.array([[-1, -1], [-1, -1]]), {}, InvalidInputError, "every vote is an abstention"),
    (np.array([[0, -2], [1, 0]]), {}, LabelSetMismatchError, "vote -2 is not a class index"),
    (np.array([0, 1, 1]), {}, InvalidInputError, r"shape \(3,\)"),
    (VOTES, dict(num_classes=1.5), InvalidInputError, "num_classes must be an integer"),
    (VOTES, dict(num_classes=True), InvalidInputError, "num_classes must be an integer"),
    (VOTES, dict(label_names=["x", "x"]), InvalidInputError, "label_names must be distinct"),
    (VOTES, dict(label_names=[0, "0"]), InvalidInputError, "label_names must be distinct"),
    (VOTES, dict(label_names="xy"), InvalidInputError, "label_names must be a list"),
    (VOTES, dict(num_classes=100_000), InvalidInputError, r"100000 classes needs about .* GiB"),
    (VOTES, dict(max_iter=0), InvalidInputError, "max_iter must be an integer ≥ 1, got 0"),
    (VOTES, dict(tol=-1.0), InvalidInputError, "tol must be a number in"),
    (VOTES, dict(beta_diag="2"), InvalidInputError, "beta_diag must be a finite number"),
    (VOTES, dict(beta_diag=float("nan")), InvalidInputError, "beta_diag must be a finite number"),
    (VOTES, dict(method="nuts", num_chains=1.5), InvalidInputError, "num_chains must be an integer ≥ 1, got 1.5"),
    (VOTES, dict(method="nuts", target_accept_prob=1.2), InvalidInputError, "target_accept_prob must be"),
    (VOTES, dict(method="nuts", adapt_metric="no"), InvalidInputError, "adapt_metric must be True or False"),
    (VOTES, dict(method="nuts", precondition=1), InvalidInputError, "precondition must be None or True or False"),
    (VOTES, dict(method="nuts", init_jitter=-0.5), InvalidInputError, r"init_jitter must be a number in \[0, 3\]"),
    (VOTES, dict(method="nuts", init_jitter=100.0), InvalidInputError, r"init_jitter must be a number in \[0, 3\]"),
    (VOTES, dict(method="nuts", step_size_jitter=1.0), InvalidInputError, r"step_size_jitter must be a number in \[0, 1\)"),
    (VOTES, dict(method="nuts", step_size_jitter=-0.1), InvalidInputError, r"step_size_jitter must be a number in \[0, 1\)"),
    (VOTES, dict(method="hmc", trajectory_length=0.0), InvalidInputError,
     r"trajectory_length must be a number in \(0, inf\)"),
    (VOTES, dict(method="hmc", trajectory_length=float("inf")), InvalidInputError, "trajectory_length must be"),
    (VOTES, dict(method="hmc", trajectory_length=True), InvalidInputError, "trajectory_length must be"),
    (VOTES, dict(method="hmc", trajectory_jitter=1.0), InvalidInputError,
     r"trajectory_jitter must be a number in \[0, 1\)"),
    (VOTES, dict(method="hmc", trajectory_jitter="0.2"), InvalidInputError, "trajectory_jitter must be"),
    (VOTES, dict(method="hmc", max_tree_depth=5), InvalidInputError, "no prior or hmc setting named"),
    (VOTES, dict(method="svi", guide="laplace"), InvalidInputError, "guide must be one of"),
    (VOTES, dict(method="svi", subsample_size=0), InvalidInputError, "subsample_size must be None or"),
    (VOTES, dict(method="em", steps=10), InvalidInputError, r"has no prior or em setting named \['steps'\]"),
    # prior_counts of the wrong shape broadcast or failed deep in torch (RuntimeError); strings: ValueError
    (VOTES, dict(prior_counts=np.ones((3, 2, 2))), InvalidInputError, r"prior_counts must have shape \[K, M, K\] = \[2, 3, 2\]"),
    (VOTES, dict(prior_counts=np.ones((2, 2, 2))), InvalidInputError, r"prior_counts must have shape"),
    (VOTES, dict(prior_counts="x"), InvalidInputError, r"prior_counts must be an array of counts, got 'x'"),
    # item_ids / model_names of a vote array were ignored without a word
    (VOTES, dict(item_ids=["a", "b", "c"]), InvalidInputError, r"item_ids must be a list of 4 names"),
    (VOTES, dict(item_ids=["a", "a", "c", "d"]), InvalidInputError, r"item_ids must be distinct"),
    (VOTES, dict(model_names="xyz"), InvalidInputError, r"model_names must be a list of 3 names"),
    (_long([0, 1, 1, 1, 0, 1]), dict(item_ids=[7, 8, 9]), InvalidInputError, r"these labels carry their own"),
    # 0 and "0" were two tasks that print (and match gold ids) as one
    (pd.DataFrame({"task": [0, "0", 1, 1], "worker": ["a", "b", "a", "b"], "label": [0, 1, 1, 1]}), {},
     InvalidInputError, r"column 'task' holds 0 and '0'"),
]


@pytest.mark.parametrize("labels, kwargs, error, match", BAD_INPUTS,
                         ids=[f"{i}-{case[3][:30]}" for i, case in enumerate(BAD_INPUTS)])
def test_bad_inputs_raise_named_errors(labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        fit_posterior(labels, **kwargs)


def test_dataframe_labels_follow_the_vote_conventions():
    """-1 is an abstention (not a class), integer labels are class indices, and a class
    set stated by num_classes / label_names may include classes nobody voted for."""
    post = fit_posterior(_long([0, -1, 1, 1, 0, 1]))
    assert post.label_names == [0, 1] and post.item_probs.shape == (3, 2)
    assert np.allclose(fit_posterior(_long([0.0, -1.0, 1.0, 1.0, 0.0, 1.0])).item_probs, post.item_probs)
    named = fit_posterior(_long([0, -1, 1, 1, 0, 1]), label_names=["neg", "pos", "neutral"])
    assert named.label_names == ["neg", "pos", "neutral"] and named.item_probs.shape == (3, 3)
    ratings = fit_posterior(_long([1, 2, 5, 5, 1, 2]), label_names=[1, 2, 3, 4, 5])
    assert ratings.item_probs.shape == (3, 5)
    assert fit_posterior(np.array([[0, 1], [1, 5]]), num_classes=6).item_probs.shape == (2, 6)
    with pytest.raises(InvalidInputError, match="no label from any weak model"):
        fit_posterior(_long([0, 1, -1, -1, 0, 1]))       # an item with only abstentions is reported


def test_memory_estimate_comes_before_any_allocation(monkeypatch):
    import bayes_w2s.posterior.inputs as inputs
    monkeypatch.setattr(inputs, "available_memory", lambda: 10 * 2**20)   # 10 MiB
    monkeypatch.setattr(inputs, "_one_hot", lambda *a: pytest.fail("allocated before checking memory"))
    with pytest.raises(InvalidInputError, match="more than the 0.0 GiB available"):
        fit_posterior(np.zeros((100_000, 5), dtype=int) + np.arange(5) % 2, num_classes=5)


# -- property-based fuzzing: a posterior over the stated classes, or the project's error ----------

from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from bayes_w2s.errors import BayesW2SError  # noqa: E402

_LABEL_VALUES = st.sampled_from([-2, -1, 0, 1, 2, 3, 7, 1.0, 1.5, "0", "a", "b", "c", None, True, float("nan")])


@st.composite
def _vote_arrays(draw):
    shape = draw(st.one_of(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7),
                           st.tuples(st.integers(1, 8), st.integers(2, 4))))       # mostly [N, M]
    dtype = draw(st.sampled_from([np.int8, np.int64, np.int64, np.uint8, np.float64, np.bool_, "U2"]))
    if dtype == "U2":
        return draw(hnp.arrays(dtype, shape, elements=st.sampled_from(["0", "1", "-1", "x"])))
    if dtype == np.bool_:
        return draw(hnp.arrays(dtype, shape))
    lo = 0 if dtype == np.uint8 else -2
    hi = draw(st.sampled_from([1, 2, 3, 6]))
    elements = st.integers(lo, hi) if np.dtype(dtype).kind in "iu" else \
        st.one_of(st.integers(-1, hi).map(float), st.sampled_from([0.5, float("nan"), float("inf")]))
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def _long_frames(draw):
    n = draw(st.integers(0, 14))
    values = draw(st.one_of(_LABEL_VALUES.map(lambda v: [v]),                       # anything goes …
                            st.sampled_from([[-1, 0, 1], [0, 1, 2], ["a", "b"], ["a", "b", "c"]])))  # … or clean
    return pd.DataFrame({"task": draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)),
                         "worker": draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n)),
                         "label": pd.Series(draw(st.lists(st.sampled_from(values) if draw(st.booleans()) else
                                                          st.one_of(st.sampled_from(values), _LABEL_VALUES),
                                                          min_size=n, max_size=n)), dtype=object).infer_objects()})


@st.composite
def _weak_labels(draw):
    n, m, k = draw(st.integers(1, 6)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    probs = np.random.default_rng(seed).dirichlet(np.ones(k) * draw(st.sampled_from([0.05, 1.0, 10.0])), size=(n, m))
    return WeakLabels(probs, [f"w{j}" for j in range(m)], [f"c{j}" for j in range(k)])


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(labels=st.one_of(_vote_arrays(), _long_frames(), _weak_labels()),
       num_classes=st.one_of(st.none(), st.none(), st.none(), st.integers(0, 6), st.just(2.5)),
       label_names=st.one_of(st.none(), st.none(), st.none(),
                             st.lists(st.sampled_from(["a", "b", "c", "d", 0, 1, 2]), max_size=5)),
       model=st.sampled_from(["dawid_skene", "one_coin", "soft"]),
       # priors within their valid ranges: out-of-range priors are the posterior engine's to reject
       priors=st.fixed_dictionaries({}, optional={"alpha_prior": st.floats(1.0, 20.0),
                                                  "beta_diag": st.floats(1.0, 20.0)}))
def test_fuzzed_inputs_give_a_posterior_or_a_project_error(labels, num_classes, label_names, model, priors):
    if model == "one_coin":
        priors = {{"beta_diag": "accuracy_a"}.get(k, k): v for k, v in priors.items()}
    if model == "soft":
        priors = {{"beta_diag": "diag_shape"}.get(k, k): v for k, v in priors.items()}
    try:
        post = fit_posterior(labels, model=model, method="em", num_classes=num_classes, label_names=label_names,
                             **priors)
    except BayesW2SError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    event("fitted")
    probs = post.item_probs
    k = len(label_names) if label_names is not None else num_classes
    assert probs.ndim == 2 and probs.shape[1] == len(post.label_names)
    if k is not None:
        assert probs.shape[1] == k
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1)


def test_a_vote_array_takes_item_ids_and_model_names():
    """They name the result's axes (and gold items by id) instead of being dropped."""
    post = fit_posterior(VOTES, item_ids=["a", "b", "c", "d"], model_names=["x", "y", "z"], gold={"b": 0})
    assert list(post.to_frame().index) == ["a", "b", "c", "d"] and list(post.model_names) == ["x", "y", "z"]
    assert post.item_probs[1, 0] == 1.0
    counts = np.ones((2, 3, 2))                       # [K, M, K] is the documented layout
    assert fit_posterior(VOTES, prior_counts=counts).item_probs.shape == (4, 2)


def test_masked_votes_are_abstentions():
    """np.asarray drops a MaskedArray's mask: masked cells used to count as votes."""
    votes = np.array([[0, 1, 1], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    mask = np.zeros_like(votes, dtype=bool)
    mask[0, 2] = mask[3, 0] = True
    masked = fit_posterior(np.ma.MaskedArray(votes, mask=mask), num_classes=2)
    np.testing.assert_allclose(masked.item_probs, fit_posterior(np.where(mask, -1, votes), num_classes=2).item_probs)


def test_a_3d_probability_array_is_pointed_at_weak_labels():
    probs = np.full((5, 3, 2), 0.5)
    with pytest.raises(InvalidInputError, match=r"reads as probabilities \[N, M, K\]: pass WeakLabels"):
        fit_posterior(probs, model="soft")


def test_boolean_labels_are_the_classes_0_and_1_in_every_layout():
    """They were refused ("got dtype bool", "neither a class index nor a class name")."""
    rng = np.random.default_rng(0)
    truth = rng.random(60) < 0.5
    votes = np.stack([np.where(rng.random(60) < 0.8, truth, ~truth) for _ in range(3)], 1)
    frame = pd.DataFrame({"task": np.repeat(np.arange(60), 3), "worker": np.tile(["a", "b", "c"], 60),
                          "label": votes.ravel()})
    expected = fit_posterior(votes.astype(int)).item_probs
    for labels in (votes, votes.tolist(), frame):
        post = fit_posterior(labels)
        assert post.label_names == [0, 1]
        np.testing.assert_allclose(post.item_probs, expected, atol=1e-9)
    assert fit_posterior(frame, label_names=["neg", "pos"]).label_names == ["neg", "pos"]
    with_gold = fit_posterior(votes, gold={3: bool(not truth[3])})
    assert with_gold.item_probs[3].argmax() == int(not truth[3])


def test_boolean_gold_follows_class_names_and_an_ambiguous_gold_array_is_refused():
    rng = np.random.default_rng(1)
    truth = rng.random(40) < 0.5
    votes = np.stack([np.where(rng.random(40) < 0.8, truth, ~truth) for _ in range(3)], 1)
    frame = pd.DataFrame({"task": np.repeat(np.arange(40), 3), "worker": np.tile(["a", "b", "c"], 40),
                          "label": np.where(votes.ravel(), "True", "False")})
    # classes named "True" / "False" in that order: gold True is the class "True" (it was index 1, "False")
    post = fit_posterior(frame, label_names=["True", "False"], gold={0: True})
    assert post.label_names[int(post.item_probs[0].argmax())] == "True"
    ratings = frame.assign(label=np.where(votes.ravel(), 2, 1))
    with pytest.raises(LabelSetMismatchError, match="give the class name, not a boolean"):
        fit_posterior(ratings, label_names=[1, 2], gold={0: True})
    with pytest.raises(InvalidInputError, match="gold as a boolean array is ambiguous"):
        fit_posterior(votes, gold=truth)
    listed = [[bool(v) if j != 1 else None for j, v in enumerate(row)] for row in votes]   # None abstains
    assert fit_posterior(listed).item_probs.shape == (40, 2)


SOFT_MODELS = ["soft", "logistic_t", "logistic_t_hetero", "logistic_t_pooled", "logistic_t_anchored"]


@pytest.mark.parametrize("model", SOFT_MODELS)
def test_a_constant_weak_model_is_refused_by_the_soft_label_models(model):
    """A weak model with one output for every item drove each soft-label model to chance (30%
    against the vote's 70% on this case) or to a NaN; a vote model fits it."""
    from .conftest import simulate_soft
    truth, labels = simulate_soft(n=300, k=3, seed=4)
    probs = labels.probs.copy()
    probs[:, 2] = [0.6, 0.3, 0.1]
    constant = WeakLabels(probs, labels.model_names, labels.label_names)
    with pytest.raises(InvalidInputError, match=r"weak model\(s\) \['w2'\] give the same probabilities on every "
                                                r"item they label.*leave them out"):
        fit_posterior(constant, model=model)
    assert (fit_posterior(constant, model="dawid_skene").labels == truth).mean() > 0.6


def test_one_hot_outputs_warn_the_soft_label_models():
    """Hard labels given as probabilities: their log-odds sit at the clipping bound, and the
    soft-label models fell below the majority vote on planted annotators; the vote models are silent."""
    truth, votes = simulate(n=300, k=3, accs=(0.75, 0.65, 0.6), seed=1)
    hard = WeakLabels(np.eye(3)[votes], ["a", "b", "c"], ["x", "y", "z"])
    with pytest.warns(RuntimeWarning, match=r"logistic_t: weak model\(s\) \['a', 'b', 'c'\] give one-hot "
                                            r"probabilities on most items they label.*reads them as votes"):
        fit_posterior(hard, model="logistic_t", max_iter=5)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_posterior(hard, model="dawid_skene")
