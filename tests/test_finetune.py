"""The fine-tuning chapter's methods: LoRA against peft, DPO against trl, the response-masked SFT loss against a
hand computation, the rule-built data, and a tiny run of each method that lowers its loss."""
import copy
import types
from collections import defaultdict

import pytest
import torch
from torch.nn import functional as F

from aigc_lib.data.instructions import (MAX_EXAMPLE, TASKS, answer, instruction_examples, is_question, prompt,
                                        speech_prompts, verse_lines, words)
from aigc_lib.models.gpt import GPT, GPTConfig
from aigc_lib.models.lora import LoRALinear, add_lora, lora_state_dict, merge_lora
from aigc_lib.tokenizers import CharTokenizer
from aigc_lib.training.finetune import (exact_match, freeze_all_but_last_block, greedy_answers, pack, sft_targets,
                                        train_sft, trainable_parameters)
from aigc_lib.training.lm import LMTrainConfig, train_lm
from aigc_lib.training.preference import dpo_loss, preference_pairs, response_logprobs, sequence_kl, train_dpo

TINY = dict(block_size=32, vocab_size=40, n_layer=2, n_head=2, n_embd=32)
TOK = CharTokenizer("\nabcdefghijklmnopqrstuvwxyz?:@ .ABCDEF")


def tiny_gpt(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**TINY, **kw})).eval()


# ----------------------------------------------------------------------------- LoRA
def hf_gpt2_with_peft(r, alpha, seed=0):
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    torch.manual_seed(seed)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=16,
                                                               vocab_size=50)).eval()
    ours = GPT.from_pretrained(hf)
    targets = ["c_attn", "c_proj", "c_fc"]
    config = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0, fan_in_fan_out=True)
    theirs = peft.get_peft_model(hf, config).eval()
    add_lora(ours, tuple(targets), r, alpha)
    # The same A and B in both (B random, not zero, so the adapter changes the output).
    ours_by_name = {n: m for n, m in ours.named_modules() if isinstance(m, LoRALinear)}
    for name, module in theirs.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            key = name.split("transformer.", 1)[1]
            mine = ours_by_name["transformer." + key]
            with torch.no_grad():
                module.lora_B["default"].weight.normal_(0, 0.1)
                mine.A.copy_(module.lora_A["default"].weight)
                mine.B.copy_(module.lora_B["default"].weight)
    assert len(ours_by_name) == 2 * 4  # four linear layers per block, two of them named c_proj
    return ours.eval(), theirs


@pytest.mark.parametrize("r, alpha", [(4, 8), (2, 16)])
def test_lora_matches_peft_on_gpt2_merged_and_unmerged(r, alpha):
    ours, theirs = hf_gpt2_with_peft(r, alpha)
    idx = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(idx).logits
        torch.testing.assert_close(ours(idx)[0], expected, atol=1e-5, rtol=1e-5)
        with theirs.disable_adapter():
            assert (expected - theirs(idx).logits).abs().max() > 1e-3  # the adapter does change the output
        merged_theirs = theirs.merge_and_unload()(idx).logits
        merged_ours = merge_lora(ours)
        assert not any(isinstance(m, LoRALinear) for m in merged_ours.modules())
        torch.testing.assert_close(merged_ours(idx)[0], merged_theirs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(merged_ours(idx)[0], expected, atol=1e-5, rtol=1e-5)


def test_lora_starts_as_the_base_model_and_trains_only_the_adapter():
    base = tiny_gpt()
    idx = torch.randint(0, 40, (2, 10))
    model = add_lora(copy.deepcopy(base), ("c_attn",), r=4, alpha=8)
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], base(idx)[0])  # B = 0 at the start
    d, layers = TINY["n_embd"], TINY["n_layer"]
    assert trainable_parameters(model) == layers * 4 * (d + 3 * d)  # r (in + out) per wrapped layer
    assert set(lora_state_dict(model)) == {f"transformer.h.{i}.attn.c_attn.{p}" for i in range(layers) for p in "AB"}


def test_lora_clear_errors():
    with pytest.raises(ValueError, match="no nn.Linear named.*c_attn"):
        add_lora(tiny_gpt(), ("q_proj",), r=4, alpha=8)
    with pytest.raises(ValueError, match="rank r must be a positive int"):
        add_lora(tiny_gpt(), ("c_attn",), r=0, alpha=8)
    with pytest.raises(TypeError, match="wraps nn.Linear"):
        LoRALinear(torch.nn.Conv1d(2, 2, 1), 2, 4)


def test_last_block_freezing():
    model = freeze_all_but_last_block(tiny_gpt())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("transformer.h.1.", "transformer.ln_f.")) for n in trainable)
    assert trainable_parameters(model) == sum(p.numel() for p in model.transformer.h[1].parameters()) + 2 * 32


def text_tensor(text):
    return torch.tensor(TOK.encode(text), dtype=torch.uint8)


@pytest.mark.parametrize("method", ["full", "last_block", "lora"])
def test_a_tiny_finetuning_run_lowers_the_loss(method):
    model = tiny_gpt()
    if method == "last_block":
        freeze_all_but_last_block(model)
    if method == "lora":
        add_lora(model, ("c_attn", "c_proj", "c_fc"), r=4, alpha=8)
    data = text_tensor("abcde abcde abcdf abcde " * 40)
    config = LMTrainConfig(steps=100, batch_size=8, block_size=16, lr=1e-2 if method == "lora" else 3e-3,
                           min_lr=1e-4, warmup_steps=5, eval_interval=60, eval_batches=4)
    history = train_lm(model, data, data, config, progress=False)
    assert history["val_loss"][-1] < 0.85 * history["val_loss"][0], history["val_loss"]


# ----------------------------------------------------------------------------- SFT
def test_pack_masks_the_response_targets_only():
    ids, mask = pack(TOK, ["ab:", "abcd:"], ["cd\n", "e\n"], length=8)
    assert ids.tolist()[0][:6] == TOK.encode("ab:cd\n") and ids[0, 6:].eq(0).all()
    # targets ids[:, t+1]: the response "cd\n" of row 0 is at positions 3..5, so mask[2..4]
    assert mask.tolist() == [[0, 0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1, 0]]
    with pytest.raises(ValueError, match="more than length"):
        pack(TOK, ["abcdef"], ["abc\n"], length=8)
    with pytest.raises(ValueError, match="pair them"):
        pack(TOK, ["a"], [], length=8)


def test_sft_loss_is_the_mean_cross_entropy_over_response_tokens():
    model = tiny_gpt()
    ids, mask = pack(TOK, ["ab:", "abcd:"], ["cd\n", "e\n"], length=8)
    x, y = sft_targets(ids, mask)
    logits, loss = model(x, y)
    logp = F.log_softmax(logits, dim=-1)
    by_hand = [-logp[b, t, ids[b, t + 1]] for b in range(2) for t in range(7) if mask[b, t]]
    torch.testing.assert_close(loss, torch.stack(by_hand).mean())
    assert len(by_hand) == 5


def test_a_tiny_sft_run_teaches_the_answer():
    model = tiny_gpt()
    prompts = [f"{w}:" for w in ("ab", "cd", "ef", "gh")]
    answers = [w[0] + "\n" for w in ("ab", "cd", "ef", "gh")]  # answer: the first letter
    ids, mask = pack(TOK, prompts, answers, length=8)
    history = train_sft(model, ids, mask, steps=80, batch_size=4, lr=1e-2, progress=False)
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    assert greedy_answers(model, TOK, prompts, max_new_tokens=3) == ["a", "c", "e", "g"]
    assert exact_match(["a", "b"], ["a", "c"]) == 0.5


# ----------------------------------------------------------------------------- DPO
def test_dpo_loss_closed_form():
    pi_w, pi_l, ref_w, ref_l = (torch.tensor(v) for v in ([-3.0, -5.0], [-4.0, -2.0], [-3.5, -4.0], [-3.0, -3.0]))
    loss, r_w, r_l = dpo_loss(pi_w, pi_l, ref_w, ref_l, beta=0.5)
    z = 0.5 * ((pi_w - ref_w) - (pi_l - ref_l))
    torch.testing.assert_close(loss, torch.log1p(torch.exp(-z)).mean())
    torch.testing.assert_close(r_w - r_l, z)
    with pytest.raises(ValueError, match="beta must be > 0"):
        dpo_loss(pi_w, pi_l, ref_w, ref_l, beta=0.0)


def trl_sigmoid_dpo_loss(pi_w, pi_l, ref_w, ref_l, beta):
    """trl's DPO loss (``DPOTrainer._compute_loss``, loss_type "sigmoid") on these log-probabilities:
    a stand-in model returns per-token log-probabilities whose response sums are ``pi_w`` / ``pi_l``,
    and the reference's sums come precomputed, as trl's ``precompute_ref_log_probs`` gives them."""
    trl = pytest.importorskip("trl")
    n = len(pi_w)
    per_token = torch.zeros(2 * n, 3)
    per_token[:, 1] = torch.cat([pi_w, pi_l])  # one response token per sequence carries the whole log-prob
    completion_mask = torch.tensor([[0, 0, 1, 0]]).repeat(2 * n, 1)

    class Model:
        training = True

        def __call__(self, **kwargs):
            shape = per_token.shape
            return types.SimpleNamespace(log_probs=per_token, entropy=torch.zeros(shape),
                                         mean_logits=torch.zeros(shape), is_top1=torch.zeros(shape, dtype=torch.bool))

    identity = types.SimpleNamespace(device="cpu", gather_for_metrics=lambda t: t, gather=lambda t: t)
    trainer = types.SimpleNamespace(model=Model(), accelerator=identity, aux_loss_enabled=False, ld_alpha=None,
                                    precompute_ref_logps=True, f_divergence_type="reverse_kl",
                                    loss_types=["sigmoid"], loss_weights=[1.0], beta=beta, use_weighting=False,
                                    _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
                                    _total_train_tokens=0, _tp_size=1)
    inputs = {"input_ids": torch.zeros(2 * n, 4, dtype=torch.long), "attention_mask": torch.ones(2 * n, 4),
              "completion_mask": completion_mask, "ref_chosen_logps": ref_w, "ref_rejected_logps": ref_l}
    return trl.DPOTrainer._compute_loss(trainer, trainer.model, inputs, return_outputs=False)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_matches_trl(beta):
    g = torch.Generator().manual_seed(0)
    pi_w, pi_l, ref_w, ref_l = (-10 * torch.rand(6, generator=g) for _ in range(4))
    ours, _, _ = dpo_loss(pi_w, pi_l, ref_w, ref_l, beta)
    torch.testing.assert_close(ours, trl_sigmoid_dpo_loss(pi_w, pi_l, ref_w, ref_l, beta))


def test_response_logprobs_sum_over_the_response():
    model = tiny_gpt()
    ids, mask = pack(TOK, ["ab:"], ["cd\n"], length=8)
    logp = F.log_softmax(model(ids[:, :-1])[0], dim=-1)
    by_hand = sum(logp[0, t, ids[0, t + 1]] for t in (2, 3, 4))
    torch.testing.assert_close(response_logprobs(model, ids, mask)[0], by_hand)
    with pytest.raises(ValueError, match="mask must be"):
        response_logprobs(model, ids, mask[:, :-1])


def test_a_tiny_dpo_run_prefers_the_chosen_and_moves_away_from_the_reference():
    reference = tiny_gpt()
    policy = copy.deepcopy(reference)
    prompts = ["ab:", "cd:", "ef:", "gh:"]
    chosen = pack(TOK, prompts, ["why?\n"] * 4, length=10)
    rejected = pack(TOK, prompts, ["yes.\n"] * 4, length=10)
    history = train_dpo(policy, reference, chosen, rejected, beta=0.5, steps=40, batch_size=4, lr=3e-3,
                        progress=False)
    assert history["loss"][-1] < 0.5 * history["loss"][0] and history["reward_margin"][-1] > 1.0
    assert sequence_kl(reference, reference, *chosen) == 0.0
    assert abs(sequence_kl(policy, reference, *chosen)) > 0.1


def test_preference_pairs_pair_accepted_with_rejected_per_prompt():
    pairs = preference_pairs(["A", "B"], [["why?\n", "no.\n", "how?\n", "cut off?"], ["yes.\n"]], is_question)
    assert pairs == [("A", "why?\n", "no.\n")]  # B has no question; "how?" has no partner; "cut off?" never ended


# ----------------------------------------------------------------------------- the rule-built data
def test_instruction_answers_follow_their_rules():
    line = "O Romeo, Romeo! wherefore art thou Romeo?"
    assert words("Go, get thee - hence!") == ["Go", "get", "thee", "hence"]
    assert [answer(t, line) for t in TASKS] == ["O", "Romeo", "7"]
    assert prompt("last word", "To be, or not") == "last word: To be, or not\n@ "
    with pytest.raises(ValueError, match="unknown task"):
        answer("rhyme", line)


def test_instruction_examples_fit_the_context_and_held_out_lines_are_new():
    from aigc_lib.data import load_shakespeare
    corpus = load_shakespeare()
    train, test = instruction_examples(corpus.train, 600, seed=0), instruction_examples(corpus.val, 300, seed=1)
    assert all(len(p) + len(a) + 1 <= MAX_EXAMPLE for _, p, a in train + test)
    assert [t for t, _, _ in train[:3]] == list(TASKS)
    assert not {p for _, p, _ in train} & {p for _, p, _ in test}
    assert len(set(verse_lines(corpus.val))) == len(verse_lines(corpus.val))
    heads = speech_prompts(corpus.val, 5)
    assert all(h.startswith("\n") and h.endswith(".\n") and h[1:-2].isupper() for h in heads)
    assert is_question("Who's there?\nNay, answer me") and not is_question("Stand, ho!\nWho?")


# ----------------------------------------------------------------------------- the recipes, tiny
def test_the_finetuning_recipes_train_tiny_and_record_what_the_chapter_reads(tmp_path, monkeypatch):
    from aigc_lib import zoo

    monkeypatch.setenv("AIGC_CACHE", str(tmp_path))
    base = zoo.ShakespeareGPT().replace(n_layer=1, n_head=2, n_embd=32, steps=4, warmup_steps=1, eval_interval=4,
                                        eval_batches=1, sample_steps=[], checkpoint_interval=0)
    lora = zoo.PoemGPT(method="lora", base=base).replace(steps=4, warmup_steps=1, eval_interval=2, eval_batches=1)
    model, history = lora.load(progress=False)
    assert history["trainable"] == 1 * 4 * (32 + 96 + 32 + 32 + 32 + 128 + 128 + 32)  # r (in + out), 4 layers
    assert history["checkpoint_bytes"] == 4 * history["trainable"] and history["val_loss_full"] > 0
    assert lora.checkpoint_path() != lora.replace(base=base.replace(n_layer=2)).checkpoint_path()  # base in the key
    sft = zoo.InstructionGPT(base=base, n_train=30, n_test=9, steps=3, batch_size=4)
    _, history = sft.load(progress=False)
    assert set(history["accuracy"]["after"]) == set(TASKS) and len(history["predictions"]) == 9
    with pytest.raises(ValueError, match="method must be one of"):
        zoo.PoemGPT(method="adapter")


def test_the_dpo_recipe_prefers_questions_by_the_chapter_rule():
    from aigc_lib.zoo import QuestionDPO

    speeches = ["Who's there?\nNay, answer me", "Stand, ho!\nWho?", "What?", "Peace.\n"]
    assert [QuestionDPO().preferred(s) for s in speeches] == [is_question(s) for s in speeches] == [True, False, True, False]
    assert QuestionDPO().replace(ends_with="e").preferred("Peace\n")
