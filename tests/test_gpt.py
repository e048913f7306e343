import math

import pytest
import torch
import torch.nn as nn

from helpers import gpt_training as T
from helpers.gpt import GPT, GPTConfig, preset, sequence_logprob


def test_attention_probabilities_are_causal_and_reproduce_the_block(small_gpt):
    model = small_gpt()
    idx = torch.randint(0, 50, (3, 12))
    maps = model.attention_maps(idx)
    assert len(maps) == 2 and maps[0].shape == (3, 2, 12, 12)
    for att in maps:
        assert torch.allclose(att.sum(-1), torch.ones(3, 2, 12))
        assert (att.triu(diagonal=1) == 0).all()
    # recompute the first block's attention output from the probabilities: equals the fast path
    block = model.h[0]
    x = model.wte(idx) + model.wpe(torch.arange(12))
    h = block.ln_1(x)
    _, _, v = block.attn._qkv(h)
    manual = block.attn.c_proj((maps[0] @ v).transpose(1, 2).reshape(3, 12, 16))
    assert torch.allclose(manual, block.attn(h), atol=1e-5)


def test_fast_and_plain_attention_agree(small_gpt):
    fast, plain = small_gpt(), small_gpt(fast_attention=False)
    plain.load_state_dict(fast.state_dict())
    idx = torch.randint(0, 50, (2, 16))
    assert torch.allclose(fast(idx)[0], plain(idx)[0], atol=1e-5)


def test_embedding_forward_equals_token_forward(small_gpt):
    model = small_gpt()
    idx = torch.randint(0, 50, (2, 10))
    assert torch.allclose(model(idx)[0], model.forward_embeddings(model.wte(idx))[0])


def test_logprob_is_a_sum_of_log_softmax(small_gpt):
    model = small_gpt(block_size=8)
    ids = torch.randint(0, 50, (20,))  # longer than the block: sliding contexts
    expected = 0.0
    for i in range(1, 20):
        logits, _ = model(ids[None, max(0, i - 8):i])
        expected += torch.log_softmax(logits[0, -1].double(), -1)[ids[i]].item()
    assert sequence_logprob(model, ids).item() == pytest.approx(expected, abs=1e-6)


class OneTokenModel(nn.Module):
    """Always puts logit `a` on token 0 and 0 elsewhere."""
    def __init__(self, vocab=10, a=3.0):
        super().__init__()
        self.config = GPTConfig(vocab_size=vocab, block_size=4)
        self.vocab, self.a = vocab, a

    def forward(self, idx, targets=None):
        logits = torch.zeros(*idx.shape, self.vocab)
        logits[..., 0] = self.a
        return logits, None

    def last_logits(self, idx):
        return self(idx)[0][:, -1]


def test_logprob_of_a_model_that_always_predicts_one_token():
    model, a, V = OneTokenModel(), 3.0, 10
    log_z = math.log(math.exp(a) + V - 1)
    ids = torch.tensor([5, 0, 0, 7, 0, 0, 0, 2])   # 7 predictions: 5 zeros, 2 others
    assert sequence_logprob(model, ids).item() == pytest.approx(5 * (a - log_z) + 2 * (0 - log_z), abs=1e-9)
    with pytest.raises(ValueError, match="two tokens"):
        sequence_logprob(model, torch.tensor([1]))


def test_bad_input(small_gpt):
    model = small_gpt()
    with pytest.raises(ValueError, match="vocab|\\[0, 50\\)"):
        model(torch.tensor([[1, 2, 50]]))
    with pytest.raises(ValueError, match="block size"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="T >= 1"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        T.encode_text("  \n", None)
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("gpt5")


def test_split_and_batches():
    tokens = torch.arange(100)
    train, val = T.split_tokens(tokens)
    assert len(train) == 90 and val[0] == 90 and train[-1] == 89
    x, y = T.get_batch(train, 8, 16, torch.Generator().manual_seed(0))
    assert x.shape == (8, 16) and torch.equal(y, x + 1) and x.max() <= 89 and y.max() <= 89


def test_generate_crops_context_and_respects_top_k(small_gpt):
    model = small_gpt(block_size=8)
    out = model.generate(torch.zeros(1, 8, dtype=torch.long), 12, top_k=1)
    assert out.shape == (1, 20)
    logits, _ = model(out[:, -9:-1])
    assert out[0, -1] == logits[0, -1].argmax()  # top-1 is greedy, computed on the cropped context


def test_tiny_model_overfits_and_is_seeded(tmp_path, small_gpt):
    text_tokens = torch.randint(0, 50, (40,), generator=torch.Generator().manual_seed(0)).repeat(10)
    cfg = T.TrainConfig(max_steps=150, batch_size=8, lr=1e-2, warmup=10, eval_every=50, eval_batches=2, bf16=False)
    runs = []
    for _ in range(2):
        model = small_gpt(vocab_size=1000, block_size=16).train()
        runs.append(T.train(model, text_tokens, text_tokens, cfg, progress=False))
    assert runs[0]["val_loss"][-1] < 0.5 < math.log(1000)
    assert runs[0]["val_loss"] == runs[1]["val_loss"]


def test_killed_training_resumes_with_the_same_state(tmp_path, kill_on_call, small_gpt):
    tokens = torch.randint(0, 50, (400,), generator=torch.Generator().manual_seed(1))
    cfg = T.TrainConfig(max_steps=40, batch_size=4, lr=3e-3, warmup=5, eval_every=10, eval_batches=1, bf16=False)
    straight_model = small_gpt().train()
    straight = T.train(straight_model, tokens, tokens, cfg, progress=False)

    ckpt = tmp_path / "gpt.pt"
    undo = kill_on_call(T, "evaluate", 5)  # two evaluations per checkpoint: the 5th call is at step 30
    with pytest.raises(KeyboardInterrupt):
        T.train(small_gpt().train(), tokens, tokens, cfg, checkpoint=ckpt, progress=False)
    undo()
    assert torch.load(ckpt, weights_only=False)["step"] == 20
    resumed_model = small_gpt().train()
    resumed = T.train(resumed_model, tokens, tokens, cfg, checkpoint=ckpt, progress=False)
    assert resumed["val_loss"] == straight["val_loss"] and resumed["best_step"] == straight["best_step"]
    for a, b in zip(resumed_model.parameters(), straight_model.parameters()):
        assert torch.equal(a, b)
    assert T.load_model(ckpt).config.n_embd == 16
    with pytest.raises(ValueError, match="another configuration"):
        T.train(small_gpt(), tokens, tokens, T.TrainConfig(max_steps=50, bf16=False), checkpoint=ckpt, progress=False)


def test_checkpoint_of_other_tokens_is_never_returned(tmp_path, capsys, small_gpt):
    """A finished checkpoint is matched by the token splits it was trained on, not only by its settings."""
    tokens = torch.randint(0, 50, (400,), generator=torch.Generator().manual_seed(1))
    cfg = T.TrainConfig(max_steps=10, batch_size=4, eval_every=10, eval_batches=1, bf16=False)
    ckpt = tmp_path / "gpt.pt"
    T.train(small_gpt().train(), tokens, tokens, cfg, checkpoint=ckpt, progress=False)
    T.train(small_gpt().train(), tokens, tokens, cfg, checkpoint=ckpt, progress=False)  # same text: resumes
    assert f"resuming from step 10 of {ckpt}" in capsys.readouterr().out
    other = tokens.flip(0)  # same length, same token counts, another text
    with pytest.raises(ValueError, match=r"data.train_tokens: saved '400:[0-9a-f]{16}', wanted '400:"):
        T.train(small_gpt().train(), other, tokens, cfg, checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match=r"data.val_tokens: saved '400:"):  # another split of the same text
        T.train(small_gpt().train(), tokens, tokens[:-1], cfg, checkpoint=ckpt, progress=False)
    assert T.token_digest(tokens) == T.token_digest(tokens.to(torch.int32)) != T.token_digest(other)


class FakeEncoding:
    """Tokens are indices into a list of strings; enough for the word helpers."""
    pieces = ["Alice", " was", " begin", "ning", " to", ",", " get"]

    def decode(self, ids):
        return "".join(self.pieces[i] for i in ids)

    def encode_ordinary(self, text):
        return [] if not text else [0]


def test_word_index_groups_tokens_into_words():
    from helpers.gpt_probing import word_index
    assert word_index(FakeEncoding(), [0, 1, 2, 3, 4, 5, 6]) == [0, 1, 2, 2, 3, 3, 4]


def test_prompt_that_encodes_to_nothing_is_an_error():
    from helpers.gpt_probing import encode_prompt
    with pytest.raises(ValueError, match="no tokens"):
        encode_prompt(FakeEncoding(), "")


def test_inversion_finds_inputs_for_a_target_sentence(small_gpt):
    from helpers.gpt_probing import attention_from, invert
    model = small_gpt()
    target = torch.tensor([3, 14, 15, 9, 26])
    out = invert(model, target, steps=300, lr=0.1, progress=False)
    assert out["exact_step"] is not None and torch.equal(out["prediction"], target)
    assert out["correct"][-1] == 5 and out["losses"][-1] < out["losses"][0]
    assert all(p.requires_grad for p in model.parameters())  # the model is unfrozen afterwards
    scores = attention_from(model, target, 3, layer=1)
    assert scores.shape == (4,) and abs(float(scores.sum()) - 1) < 1e-6
    with pytest.raises(ValueError, match="query position"):
        attention_from(model, target, 7, layer=0)
