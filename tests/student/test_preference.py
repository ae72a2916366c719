"""DPO / conservative DPO: pairs, the collator, each loss against its formula, a tiny run."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bayes_w2s.errors import InvalidInputError
from bayes_w2s.metrics import item_slu_f1
from bayes_w2s.student import train_student
from bayes_w2s.student.preference import (ConservativeDPOTrainer, PreferenceCollator, clone_model, PreferenceConfig,
                                          PreferencePairs, conservative_dpo_loss, dpo_config, make_pairs,
                                          posterior_utilities, student_candidates, train_preference)
from bayes_w2s.weak.generators import GeneratorConfig, prompt_of

PAIRS = [("wake me at five am", '{"time": "five am"}'), ("play some jazz", '{"music_genre": "jazz"}'),
         ("what is the weather today", '{"date": "today"}'), ("hello there", "{}")] * 4
EPS = [0.05, 0.2, 0.35, 0.45]


def test_config_rejects_bad_combinations_early():
    with pytest.raises(InvalidInputError, match=r"epsilon must be in \[0, 0.5\)"):
        PreferenceConfig(epsilon=0.5)
    with pytest.raises(InvalidInputError, match="beta must be > 0"):
        PreferenceConfig(beta=0.0)
    with pytest.raises(InvalidInputError, match="N\\) must be ≥ 2"):
        PreferenceConfig(n_candidates=1)
    with pytest.raises(InvalidInputError, match="unknown preference loss"):
        PreferenceConfig(loss="kto")
    with pytest.raises(InvalidInputError, match=r"min_p must be in \[0, 1\)"):
        PreferenceConfig(min_p=1.0)
    with pytest.raises(InvalidInputError, match="sft_weight"):
        PreferenceConfig(sft_weight=-1.0)
    for bad, match in (({"learning_rate": float("inf")}, "learning_rate must be a finite number"),
                       ({"beta": float("inf")}, "beta must be a finite number"),
                       ({"epochs": float("inf")}, "epochs must be a finite number"),
                       ({"warmup_ratio": -1}, r"warmup_ratio must be in \[0, 1\)"),
                       ({"lora_r": 0}, "lora_r must be > 0"), ({"lora_alpha": -3}, "lora_alpha must be > 0"),
                       ({"batch_size": 2.5}, "batch_size must be a finite integer")):
        with pytest.raises(InvalidInputError, match=match):
            PreferenceConfig(**bad)
    with pytest.raises(InvalidInputError, match="best_of_n is the chosen completions' NLL alone"):
        PreferenceConfig(loss="best_of_n", sft_weight=1.0)
    with pytest.raises(InvalidInputError, match="unknown ranker"):
        PreferenceConfig(ranker="random")


def test_oracle_ranker_pairs_the_candidates_best_and_worst_against_the_reference():
    from bayes_w2s.metrics import item_slu_f1
    from bayes_w2s.student.preference import make_pairs, reference_scores

    ref = '{"date": "today", "place_name": "paris"}'
    cands = [['{}', '{"date": "today"}', ref, '{"place_name": "rome"}'], ['{}', '{}']]
    scores = reference_scores(cands, [ref, "{}"], item_slu_f1)
    assert scores[0][2] == 1.0 and scores[0][0] == 0.0 and 0 < scores[0][1] < 1
    utilities = [(np.zeros((4, 1)), np.ones(1)), (np.zeros((2, 1)), np.ones(1))]
    pairs = make_pairs(["t1", "t2"], cands, scores, utilities, source="oracle ranker")
    assert len(pairs) == 1 and pairs.chosen == [ref] and pairs.rejected[0] in ('{}', '{"place_name": "rome"}')
    with pytest.raises(InvalidInputError, match="2 candidate lists for 1 references"):
        reference_scores(cands, [ref], item_slu_f1)


def test_make_pairs_takes_best_and_worst_and_the_posterior_probability():
    cands = [["a", "b", "c"], ["x"], ["u", "v"]]
    scores = [np.array([0.1, 0.9, -1.0]), np.array([0.0]), np.array([1.0, 1.0])]
    # item 0: chosen b, rejected c; under the posterior (two truths, w = 0.75 / 0.25) b beats c
    # in the first truth and ties in the second → p = 0.75 + 0.5 * 0.25
    u0 = np.array([[0.0, 1.0], [1.0, 0.5], [0.0, 0.5]])
    utilities = [(u0, np.array([0.75, 0.25])), (np.ones((1, 1)), np.ones(1)), (np.ones((2, 1)), np.ones(1))]
    pairs = make_pairs(["t0", "t1", "t2"], cands, scores, utilities, source="test")
    assert (pairs.texts, pairs.chosen, pairs.rejected) == (["t0"], ["b"], ["c"])     # t1: one candidate, t2: tie
    assert pairs.p[0] == pytest.approx(0.875) and pairs.epsilon[0] == pytest.approx(0.125)
    low = PreferencePairs(["t"], ["a"], ["b"], np.array([0.2]))
    assert low.epsilon[0] == pytest.approx(0.49)                  # clipped below 1/2
    with pytest.raises(InvalidInputError, match="no preference pairs"):
        make_pairs(["t2"], [cands[2]], [scores[2]], [utilities[2]])
    with pytest.raises(InvalidInputError, match="probabilities in"):
        PreferencePairs(["t"], ["a"], ["b"], np.array([1.5]))


def test_on_policy_pairs_reject_the_students_top_candidate_where_it_is_not_the_best():
    cands = [["a", "b", "c"], ["x", "y", "z"]]
    scores = [np.array([0.5, 0.9, -1.0]), np.array([0.9, 0.1, 0.5])]
    u = np.array([[0.5], [0.9], [-1.0]])
    utilities = [(u, np.ones(1)), (np.array([[0.9], [0.1], [0.5]]), np.ones(1))]
    top = make_pairs(["t0", "t1"], cands, scores, utilities, rejected="top")
    assert top.chosen == ["b", "x"] and top.rejected == ["a", "y"]   # t1: top is best → best vs worst
    assert top.p[0] == 1.0
    worst = make_pairs(["t0", "t1"], cands, scores, utilities)
    assert worst.rejected == ["c", "y"]
    with pytest.raises(InvalidInputError, match="unknown rejected 'greedy'"):
        make_pairs(["t0"], cands[:1], scores[:1], utilities[:1], rejected="greedy")
    with pytest.raises(InvalidInputError, match="unknown rejected"):
        PreferenceConfig(rejected="greedy")


def test_filter_keeps_the_pairs_the_posterior_is_sure_of():
    pairs = PreferencePairs(["a", "b", "c"], ["1", "2", "3"], ["x", "y", "z"], np.array([0.55, 0.9, 0.7]),
                            items=np.array([4, 7, 9]))
    kept = pairs.filter(0.7)
    assert (kept.texts, kept.chosen, kept.items.tolist(), kept.p.tolist()) == (["b", "c"], ["2", "3"], [7, 9],
                                                                               [0.9, 0.7])
    with pytest.raises(InvalidInputError, match="no preference pair has p ≥ 0.95"):
        pairs.filter(0.95)


def test_posterior_utilities_are_expected_slu_f1_under_posterior_draws():
    from bayes_w2s.posterior import fit_posterior
    from bayes_w2s.tasks.generation import is_well_formed

    good = '{"time": "five am"}'
    hyps = [[good, good, '{"time": "six am"}']] * 20
    post = fit_posterior(hyps, model="word_reliability", method="em").constrain(is_well_formed)
    (u, w) = posterior_utilities(post, [[good, '{"time": "six am"}', "{}"]] * 20, item_slu_f1, 200, seed=0)[0]
    assert u.shape[0] == 3 and abs(w.sum() - 1) < 1e-12
    expected = u @ w
    assert expected[0] > expected[1] > expected[2] == 0.0          # "{}" has no slot right


def test_posterior_utilities_never_score_against_an_emptied_filler():
    # a weak generator that writes an empty filler ('"date": ""', as SLURP's scratch GPT-2 does)
    # must not become a sampled truth: SLU-F1 cannot score against an empty gold filler
    from bayes_w2s.posterior import fit_posterior
    from bayes_w2s.tasks.generation import is_well_formed, parse_slots

    full, emptied = '{"event_name": "meetings", "date": "today"}', '{"event_name": "meetings", "date": ""}'
    hyps = [[full, emptied, emptied]] * 20
    post = fit_posterior(hyps, model="word_reliability", method="em").constrain(is_well_formed)
    draws = post.sample_targets(200, seed=0)
    with pytest.raises(InvalidInputError, match="num_samples must be an integer"):   # was numpy's TypeError
        post.sample_targets(2.5)
    assert all(e["filler"] for d in draws for text in d for e in parse_slots(text)[0])
    (u, w) = posterior_utilities(post, [[full, emptied]] * 20, item_slu_f1, 200, seed=0)[0]
    assert np.isfinite(u).all() and abs(w.sum() - 1) < 1e-12


def test_collator_carries_the_per_pair_epsilon_intact():
    rows = [{"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4, 5], "epsilon": e} for e in EPS]
    batch = PreferenceCollator(pad_token_id=0)(rows)
    assert batch["epsilon"].tolist() == pytest.approx(EPS)
    assert batch["input_ids"].shape[0] == 2 * len(EPS)            # chosen rows, then rejected rows


@pytest.fixture(scope="module")
def sft_student():
    texts, targets = map(list, zip(*PAIRS))
    cfg = GeneratorConfig(mode="full", epochs=1, batch_size=8, learning_rate=1e-3, max_new_tokens=8, n_best=2)
    from datasets import Dataset
    return train_student("gpt2-tiny-scratch", Dataset.from_dict({"text": texts, "target": targets}), targets,
                         "xent", config=cfg, seed=0)


def _pairs():
    texts = [t for t, _ in PAIRS[:4]]
    chosen = [c for _, c in PAIRS[:4]]
    rejected = ['{"date": "today"}', "{}", '{"time": "five am"}', '{"music_genre": "jazz"}']
    return PreferencePairs(texts, chosen, rejected, 1 - np.array(EPS))


def _sequence_logp(model, tok, prompt, completion):
    """log π(completion | prompt) by a plain forward (no TRL code)."""
    p = tok(prompt)["input_ids"]
    c = tok(prompt + completion + tok.eos_token)["input_ids"][len(p):]
    ids = torch.tensor([p + c], device=model.device)
    with torch.no_grad():
        lp = F.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1).cpu()
    return float(lp[torch.arange(len(p) - 1, len(p) + len(c) - 1), torch.tensor(c)].sum())


@pytest.mark.parametrize("loss, alpha", [("dpo", 0.0), ("cdpo", 0.0), ("cdpo_pair", 0.0), ("robust", 0.0),
                                         ("ipo", 0.0), ("cdpo_pair", 0.5), ("dpo", 0.5), ("best_of_n", 0.0)])
def test_each_loss_equals_its_formula(sft_student, loss, alpha, tmp_path):
    """The trainer's loss on a batch = the formula on log-probs computed independently,
    with the policy moved away from the (precomputed) reference so that h ≠ 0; with α > 0
    plus α × the chosen completions' mean token NLL (the SFT + DPO mix)."""
    from datasets import Dataset

    gen, pairs = sft_student.generator, _pairs()
    tok, model = gen.tokenizer, gen.model
    cfg = PreferenceConfig(loss=loss, beta=0.5, epsilon=0.2, mode="full", batch_size=4, sft_weight=alpha)
    rows = {"prompt": [prompt_of(t) for t in pairs.texts], "chosen": [" " + c for c in pairs.chosen],
            "rejected": [" " + r for r in pairs.rejected], "epsilon": pairs.epsilon.tolist()}
    policy = clone_model(model).train()
    trainer = ConservativeDPOTrainer(model=policy, args=dpo_config(cfg, 0, str(tmp_path), 64),
                                     train_dataset=Dataset.from_dict(rows), processing_class=tok,
                                     data_collator=PreferenceCollator(pad_token_id=tok.pad_token_id),
                                     preference_loss=loss, sft_weight=alpha)
    ref = [(_sequence_logp(model, tok, p, c), _sequence_logp(model, tok, p, r))
           for p, c, r in zip(rows["prompt"], rows["chosen"], rows["rejected"])]
    np.testing.assert_allclose(trainer.train_dataset["ref_chosen_logps"], [a for a, _ in ref], rtol=1e-4, atol=1e-4)
    with torch.no_grad():                                         # move the policy off the reference
        for prm in policy.parameters():
            prm.add_(0.05 * torch.randn(prm.shape, generator=torch.Generator().manual_seed(prm.numel())).to(prm))
    pol = [(_sequence_logp(policy, tok, p, c), _sequence_logp(policy, tok, p, r))
           for p, c, r in zip(rows["prompt"], rows["chosen"], rows["rejected"])]
    h = torch.tensor([(pc - rc) - (pr - rr) for (pc, pr), (rc, rr) in zip(pol, ref)], dtype=torch.float64)
    assert h.abs().min() > 1e-3
    b, eps = 0.5, torch.tensor(pairs.epsilon, dtype=torch.float64)
    n_tok = lambda p, c: len(tok(p + c + tok.eos_token)["input_ids"]) - len(tok(p)["input_ids"])  # noqa: E731
    n_c = torch.tensor([n_tok(p, c) for p, c in zip(rows["prompt"], rows["chosen"])], dtype=torch.float64)
    n_r = torch.tensor([n_tok(p, r) for p, r in zip(rows["prompt"], rows["rejected"])], dtype=torch.float64)
    per_token_h = torch.tensor([(pc - rc) for (pc, _), (rc, _) in zip(pol, ref)], dtype=torch.float64) / n_c - \
        torch.tensor([(pr - rr) for (_, pr), (_, rr) in zip(pol, ref)], dtype=torch.float64) / n_r
    expected = {"dpo": -F.logsigmoid(b * h),
                "cdpo": -(0.8 * F.logsigmoid(b * h) + 0.2 * F.logsigmoid(-b * h)),
                "cdpo_pair": -((1 - eps) * F.logsigmoid(b * h) + eps * F.logsigmoid(-b * h)),
                "robust": (-(0.8) * F.logsigmoid(b * h) + 0.2 * F.logsigmoid(-b * h)) / 0.6,
                "ipo": (per_token_h - 1 / (2 * b)) ** 2,
                "best_of_n": torch.zeros(1, dtype=torch.float64)}[loss].mean()   # the chosen NLL alone
    expected = expected + (1.0 if loss == "best_of_n" else alpha) * -sum(pc for pc, _ in pol) / n_c.sum()
    examples = [trainer.train_dataset[i] for i in range(len(pairs))]
    batch = trainer.data_collator(examples)
    assert batch["epsilon"].tolist() == pytest.approx(pairs.epsilon.tolist())
    policy.train()
    got = trainer.compute_loss(policy, dict(batch))
    assert float(got.detach()) == pytest.approx(float(expected), rel=1e-4)
    assert float(conservative_dpo_loss(h, b, 0.0).mean()) == pytest.approx(float(-F.logsigmoid(b * h).mean()))


def test_a_tiny_preference_run_changes_the_parameters_and_keeps_the_sft_student(sft_student):
    before = sft_student.generator.model.transformer.h[0].mlp.c_fc.weight.detach().clone()
    cfg = PreferenceConfig(loss="cdpo_pair", beta=0.5, mode="full", batch_size=4, epochs=2, learning_rate=1e-3)
    tuned = train_preference(sft_student, _pairs(), cfg, seed=0)
    after = tuned.generator.model.transformer.h[0].mlp.c_fc.weight
    assert not torch.allclose(after, before)
    assert torch.equal(sft_student.generator.model.transformer.h[0].mlp.c_fc.weight, before)
    # TRL leaves the KV cache off in the trained model's generation config; we decode with it on
    calls = []
    real_generate = tuned.generator.model.generate
    tuned.generator.model.generate = lambda *a, **kw: calls.append(kw.get("use_cache")) or real_generate(*a, **kw)
    cands = student_candidates(tuned, ["play some jazz"], n=2, progress=False)
    assert calls and all(c is True for c in calls)
    assert len(cands) == 1 and 1 <= len(cands[0]) <= 2


def test_trl_internals_we_rely_on_are_there(sft_student, tmp_path):
    """ConservativeDPOTrainer uses TRL internals: the fused LM head (model(..., fused_lm_head=True)
    .log_probs), _set_signature_columns_if_needed / _signature_columns, compute_ref_log_probs,
    self._metrics, self.beta and self.label_smoothing. setup.cfg caps trl at the tested minor;
    if this test fails after raising the cap, adapt student/preference.py before anything else."""
    import trl
    from datasets import Dataset
    from trl import DPOTrainer

    assert trl.__version__.startswith("1.16."), f"trl {trl.__version__}: the preference stage is tested with 1.16"
    for name in ("_set_signature_columns_if_needed", "compute_ref_log_probs", "compute_loss"):
        assert callable(getattr(DPOTrainer, name, None)), f"DPOTrainer.{name} moved"
    gen, pairs = sft_student.generator, _pairs()
    rows = {"prompt": [prompt_of(t) for t in pairs.texts], "chosen": [" " + c for c in pairs.chosen],
            "rejected": [" " + r for r in pairs.rejected], "epsilon": pairs.epsilon.tolist()}
    trainer = ConservativeDPOTrainer(model=clone_model(gen.model).train(),
                                     args=dpo_config(PreferenceConfig(mode="full", batch_size=4), 0, str(tmp_path), 64),
                                     train_dataset=Dataset.from_dict(rows), processing_class=gen.tokenizer,
                                     data_collator=PreferenceCollator(pad_token_id=gen.tokenizer.pad_token_id),
                                     preference_loss="cdpo_pair")
    trainer._signature_columns = None
    trainer._set_signature_columns_if_needed()
    assert "epsilon" in trainer._signature_columns and "chosen_ids" in trainer._signature_columns
    assert isinstance(trainer._metrics["train"]["rewards/margins"], list)
    assert trainer.beta == 0.1 and trainer.label_smoothing == 0.0
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    chosen, rejected, nll = trainer.sequence_logps(trainer.model, batch)   # model(..., fused_lm_head=True).log_probs
    assert chosen.shape == rejected.shape == (4,) and torch.isfinite(chosen).all() and nll.ndim == 0
