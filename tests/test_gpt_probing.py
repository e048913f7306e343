import math

import pytest
import torch

from helpers import gpt_probing as P
from helpers import gpt_training as T
from helpers.gpt import GPT, GPTConfig, token_logprobs


def test_next_token_logprob_matches_the_model_without_knockout(small_gpt):
    model, ids = small_gpt(vocab_size=64), torch.tensor([3, 14, 15, 9, 26, 5, 35])
    expected = token_logprobs(model, ids)
    for q in (0, 3, 5):
        assert abs(P.next_token_logprob(model, ids, q) - float(expected[q])) < 1e-5


def test_knocking_out_a_key_in_a_one_layer_model_hides_that_token(small_gpt):
    model = small_gpt(vocab_size=64, n_layer=1)
    a, b = torch.tensor([3, 14, 15, 9, 26, 5]), torch.tensor([3, 14, 40, 9, 26, 5])   # differ at position 2
    assert abs(P.next_token_logprob(model, a, 4) - P.next_token_logprob(model, b, 4)) > 1e-4
    assert abs(P.next_token_logprob(model, a, 4, [2]) - P.next_token_logprob(model, b, 4, [2])) < 1e-6
    deltas = P.attention_knockout(model, a, 4)
    assert deltas.shape == (5,) and math.isnan(deltas[4]) and not torch.isnan(deltas[:4]).any()


def test_pair_count_and_token_labels():
    assert P.pair_count(torch.tensor([1, 2, 1, 2, 2, 1]), 1, 2) == 2
    assert P.show_token("\n") == "⏎" and P.show_token(" the") == " the" and P.show_token(" ") == "␣"


class Counting:
    """A stand-in model whose next token is always the last one plus 1."""

    def generate(self, ids, n, temperature=1.0, generator=None):
        return torch.cat([ids, ids[:, -1:] + 1], dim=1)


class Digits:
    def decode(self, ids):
        return "." if ids[0] == 5 else "x"


def test_sample_until_stops_at_a_sentence_end():
    ids, ended = P.sample_until(Counting(), Digits(), torch.tensor([1]))
    assert ended and ids.tolist() == [1, 2, 3, 4, 5]
    ids, ended = P.sample_until(Counting(), Digits(), torch.tensor([1]), max_new_tokens=2)
    assert not ended and ids.tolist() == [1, 2, 3]


def test_sample_logprobs_and_sampled_token_odds(small_gpt):
    model = small_gpt(vocab_size=64)
    lp = P.sample_logprobs(model, torch.tensor([3, 4]), 5, 6, torch.Generator().manual_seed(0))
    assert lp.shape == (5, 6) and (lp <= 0).all()
    ids = torch.tensor([3, 4, 7, 9])
    odds = P.sampled_token_odds(model, ids, 2)
    assert abs(odds["p"] - odds["p_sampling"]) < 1e-9 and abs(math.log(odds["p"]) - float(token_logprobs(model, ids)[1])) < 1e-5
    greedy = int(model.last_logits(ids[None, :2])[0].argmax())
    top1 = P.sampled_token_odds(model, torch.tensor([3, 4, greedy]), 2, top_k=1)
    assert top1["rank"] == 1 and abs(top1["p_sampling"] - 1) < 1e-9
    assert P.sampled_token_odds(model, torch.tensor([3, 4, (greedy + 1) % 64]), 2, top_k=1)["p_sampling"] == 0


def test_inversion_reports_cosines_and_probabilities(small_gpt):
    model = small_gpt(vocab_size=64)
    target = torch.tensor([3, 14, 15, 9])
    out = P.invert(model, target, steps=200, progress=False)
    assert out["exact_step"] is not None
    assert (out["target_cosine"] <= out["nearest_cosine"] + 1e-6).all()
    assert out["start"].shape == out["embeddings"].shape and out["start_target_cosine"].shape == (4,)
    assert (out["target_prob"] > 0).all() and (out["target_prob"] <= 1).all()


def test_ngram_losses_see_the_bigram_structure():
    train = torch.tensor([0, 1, 2] * 50)
    uni = T.ngram_loss(train, train, 3, alpha=1e-6)
    assert abs(uni - math.log(3)) < 1e-3                  # three equally frequent tokens
    assert T.ngram_loss(train, train, 3, alpha=1e-6, lam=0.9) < 0.2 < uni
    fit = T.fit_ngram(train, train, 3)
    assert fit["lam"] >= 0.9 and fit["bigram"] < fit["unigram"]


def test_slice_losses_cut_where_split_tokens_cuts(small_gpt):
    model = small_gpt(block_size=8)
    tokens = torch.randint(0, 50, (400,), generator=torch.Generator().manual_seed(0))
    losses = T.slice_losses(model, tokens, 4, 8)
    assert len(losses) == 4
    assert abs(losses[-1] - T.evaluate(model, T.split_tokens(tokens, 0.25)[1], None, 8)) < 1e-9
    cfg = T.TrainConfig(eval_batches=2, batch_size=4, bf16=False)
    train_loss, val_loss = T.start_losses(model, tokens, tokens, cfg)
    assert abs(val_loss - T.evaluate(model, tokens, None, 4)) < 1e-9 and abs(val_loss - math.log(50)) < 0.5


def test_target_probs_reproduce_the_model_and_the_mean_row_cosines(small_gpt):
    model, ids = small_gpt(vocab_size=64), torch.tensor([3, 14, 15, 9, 26])
    target = torch.tensor([14, 15, 9, 26, 5])
    p = P.target_probs(model, model.wte.weight[ids].detach(), target)
    expected = token_logprobs(model, torch.cat([ids, target[-1:]])).exp()
    assert torch.allclose(p.float(), expected.float(), atol=1e-5)
    cos = P.cosines_to_mean_row(model)
    assert cos.shape == (64,) and float(cos.abs().max()) <= 1 + 1e-6


def test_top_overlap_counts_shared_top_positions_and_the_chance_level():
    a, b = torch.tensor([0.5, 0.1, 0.3, 0.05, 0.05]), torch.tensor([0.2, 0.4, 0.3, 0.05, 0.05])
    assert P.top_overlap(a, b, 2, 2) == (1, 0.8)            # a's top {0, 2}, b's top {1, 2}
    assert P.top_overlap(a, a, 3, 3)[0] == 3
    try:
        P.top_overlap(a, b[:3], 2, 2)
    except ValueError:
        pass
    else:
        raise AssertionError("lengths differ: must raise")


def test_piece_losses_cut_consecutive_pieces(small_gpt):
    model, tokens = small_gpt(vocab_size=64), torch.arange(23) % 64
    losses = P.piece_losses(model, tokens, 4)                                  # 23 // 5 = 4 pieces
    assert losses.shape == (4,)
    assert abs(float(losses[1]) + float(token_logprobs(model, tokens[5:10]).mean())) < 1e-6


def test_continuations_rank_a_bigram_among_what_follows_its_first_token():
    tokens = torch.tensor([1, 2, 1, 3, 1, 3, 1, 4, 1, 3, 5, 2, 1])   # after 1: 3 three times, 2 and 4 once each
    c = P.continuations(tokens, 1, 2, k=2)
    assert (c["total"], c["distinct"], c["count"], c["rank"]) == (5, 3, 1, 2)   # 2 ties with 4: both rank 2
    assert c["top"][0] == (3, 3) and len(c["top"]) == 2
    assert P.continuations(tokens, 1, 3)["rank"] == 1
    assert sum(P.pair_count(tokens, 1, t) for t in range(6)) == c["total"]
    missing = P.continuations(tokens, 1, 5)
    assert missing["count"] == 0 and missing["rank"] is None
    assert P.continuations(tokens, 7, 1)["total"] == 0                   # a token that never occurs
    with pytest.raises(ValueError, match="k must be"):
        P.continuations(tokens, 1, 2, k=0)
