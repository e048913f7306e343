"""Looking inside a trained `GPT`: input inversion, words and their tokens, attention to the context."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .gpt import GPT, token_logprobs


def encode_prompt(encoding, text: str) -> torch.Tensor:
    """Token ids of `text`; a text that encodes to nothing is an error."""
    ids = encoding.encode_ordinary(text)
    if not ids:
        raise ValueError(f"{text!r} encodes to no tokens: give a non-empty prompt or sentence")
    return torch.tensor(ids, dtype=torch.long)


def invert(model: GPT, target: torch.Tensor, steps: int = 300, lr: float = 0.1, seed: int = 0,
           stop_when_exact: bool = True, progress: bool = True) -> dict:
    """Find input vectors e_1..e_T such that the frozen model's output at position i is target token i.

    The vectors replace the token embeddings (positions are still added); loss = Σ_i CE(logits_i, target_i)/T,
    optimised with Adam from the mean token embedding plus small noise. Returns the vectors, the loss and
    the number of positions right at each step, and `exact_step`: the first step count after which the argmax
    at every position equals the target (None if never). Also, per position at the end: the nearest token by
    cosine similarity and that similarity, the cosine to the target token's own embedding (and the start's), and
    the probability the model gives the target.
    """
    target = torch.as_tensor(target, dtype=torch.long).flatten()
    model.check_ids(target[None])
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0 (the number of Adam updates), got {steps!r}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    mean = model.wte.weight.detach().mean(0)
    emb = (mean + 0.02 * torch.randn(len(target), mean.numel(), generator=g))[None].requires_grad_(True)  # (1, T, C)
    start = emb.detach()[0].clone()
    opt = torch.optim.Adam([emb], lr=lr)
    losses, correct, exact_step = [], [], None
    try:
        for step in tqdm(range(steps + 1), desc="inverting", disable=not progress, mininterval=1.0):
            logits, _ = model.forward_embeddings(emb)
            loss = F.cross_entropy(logits[0].float(), target)
            right = int((logits[0].argmax(-1) == target).sum())
            losses.append(loss.item())
            correct.append(right)
            if right == len(target) and exact_step is None:
                exact_step = step                   # `step` Adam updates have been made
                if stop_when_exact:
                    break
            if step == steps:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    with torch.no_grad():
        logits, _ = model.forward_embeddings(emb)
        cos = F.cosine_similarity(emb[0, :, None, :], model.wte.weight[None], dim=-1)         # (T, vocab)
        start_cos = F.cosine_similarity(start, model.wte.weight[target], dim=-1)
        nearest_cos, nearest = cos.max(-1)
        probs = F.softmax(logits[0].double(), dim=-1)
    positions = torch.arange(len(target))
    return {"embeddings": emb.detach()[0], "start": start, "losses": losses, "correct": correct,
            "exact_step": exact_step, "prediction": logits[0].argmax(-1), "nearest_tokens": nearest,
            "nearest_cosine": nearest_cos, "target_cosine": cos[positions, target], "start_target_cosine": start_cos,
            "target_prob": probs[positions, target]}


def word_index(encoding, ids) -> list[int]:
    """For each token, the index of the whitespace-separated word it belongs to (0-based)."""
    out, words, text = [], 0, ""
    for tok in ids:
        piece = encoding.decode([int(tok)])
        if piece[:1].isspace() and text.strip():
            words += 1
        text += piece
        out.append(words)
    return out


def generate_words(model: GPT, encoding, prompt: str, n_words: int, temperature: float = 0.8,
                   top_k: int | None = 40, seed: int = 0, max_tokens: int = 64) -> torch.Tensor:
    """Token ids of `prompt` continued by the model until the text holds exactly `n_words` complete words."""
    if isinstance(n_words, bool) or not isinstance(n_words, int) or n_words < 1:
        raise ValueError(f"n_words must be an integer >= 1, got {n_words!r}")
    ids = encode_prompt(encoding, prompt)[None]
    if word_index(encoding, ids[0])[-1] >= n_words:
        raise ValueError(f"the prompt {prompt!r} already holds more than {n_words} words")
    g = torch.Generator().manual_seed(seed)
    for _ in range(max_tokens):
        words = word_index(encoding, ids[0])
        if words[-1] >= n_words:             # a token of word n_words + 1 exists: word n_words is complete
            keep = [i for i, w in enumerate(words) if w < n_words]
            return ids[0, : keep[-1] + 1]
        ids = model.generate(ids, 1, temperature=temperature, top_k=top_k, generator=g)
    raise ValueError(f"no {n_words} words after {max_tokens} generated tokens; raise max_tokens")


@torch.no_grad()
def attention_from(model: GPT, ids: torch.Tensor, query: int, layer: int) -> torch.Tensor:
    """Attention of position `query` over positions 0..query in `layer`, averaged over heads: (query + 1,)."""
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    if not 0 <= query < len(ids):
        raise ValueError(f"query position {query} outside the {len(ids)} tokens")
    n_layer = model.config.n_layer
    if isinstance(layer, bool) or not isinstance(layer, int) or not -n_layer <= layer < n_layer:
        raise ValueError(f"layer must be an integer in 0..{n_layer - 1} (or -1 for the last), got {layer!r}")
    maps = model.attention_maps(ids[None, : query + 1])
    return maps[layer][0, :, query, :].mean(0)                                 # (query + 1,)


def show_token(piece: str) -> str:
    """A token as a label: a newline shows as ⏎ (an empty-looking label otherwise), a lone space as ␣."""
    return piece.replace("\n", "⏎") if piece.strip() or "\n" in piece else piece.replace(" ", "␣")


def pair_count(tokens: torch.Tensor, first: int, second: int) -> int:
    """How often token `second` directly follows token `first` in `tokens` (a bigram count)."""
    tokens = torch.as_tensor(tokens).flatten()
    return int(((tokens[:-1] == first) & (tokens[1:] == second)).sum())


def continuations(tokens: torch.Tensor, first: int, second: int, k: int = 4) -> dict:
    """What follows token `first` in `tokens`, as a fair baseline for one bigram count: `total` (occurrences of
    `first` followed by a token), `distinct` next tokens, the `k` most frequent as `top` [(token, count)], and for
    `second` its `count` and `rank` among the next tokens (1 = most frequent, ties share the better rank; None if
    it never follows `first`)."""
    tokens = torch.as_tensor(tokens).flatten()
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer (how many continuations to list), got {k!r}")
    nxt = tokens[1:][tokens[:-1] == first]
    values, counts = nxt.unique(return_counts=True)
    count = int(counts[values == second].sum())
    order = counts.argsort(descending=True, stable=True)
    return {"total": len(nxt), "distinct": len(values), "count": count,
            "rank": 1 + int((counts > count).sum()) if count else None,
            "top": [(int(values[i]), int(counts[i])) for i in order[:k]]}


@torch.no_grad()
def next_token_logprob(model: GPT, ids: torch.Tensor, query: int, knock_out=(), layers=None) -> float:
    """log p(ids[query + 1] | ids[:query + 1]), with the attention of position `query` to the positions in
    `knock_out` removed in `layers` (all by default): their scores are set to −∞ before the softmax, so the query's
    remaining attention renormalises. Only the query's row changes; other positions still see every token."""
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    if not 0 <= query < len(ids) - 1:
        raise ValueError(f"query {query} must have a next token among the {len(ids)} tokens")
    knock_out = [int(k) for k in knock_out]
    if any(not 0 <= k <= query for k in knock_out):
        raise ValueError(f"knocked-out positions {knock_out} must lie in 0..{query} (what the query sees)")
    layers = range(model.config.n_layer) if layers is None else [l % model.config.n_layer for l in layers]
    model.eval()
    x_ids = model.check_ids(ids[None, : query + 1])
    x = model.wte(x_ids) + model.wpe(torch.arange(query + 1))
    for i, block in enumerate(model.h):
        attn = block.attn
        q, k, v = attn._qkv(block.ln_1(x))
        att = (q @ k.transpose(-2, -1)) / k.shape[-1] ** 0.5
        att = att.masked_fill(~attn.mask[:, :, : query + 1, : query + 1], float("-inf"))
        if i in layers and knock_out:
            att[:, :, query, knock_out] = float("-inf")
        y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(x.shape)
        x = x + attn.c_proj(y)
        x = x + block.mlp(block.ln_2(x))
    logits = model.lm_head(model.ln_f(x[0, query]))
    return float(F.log_softmax(logits.double(), dim=-1)[ids[query + 1]])


def attention_knockout(model: GPT, ids: torch.Tensor, query: int, layers=None) -> torch.Tensor:
    """For each position j ≤ query (not the query itself: NaN there), the change in log p(ids[query + 1]) when the
    query's attention to j is removed in `layers` (`next_token_logprob`). Negative: j's attention helped."""
    base = next_token_logprob(model, ids, query)
    return torch.tensor([float("nan") if j == query else next_token_logprob(model, ids, query, [j], layers) - base
                         for j in range(query + 1)])


def sample_until(model: GPT, encoding, ids: torch.Tensor, stops: str = ".!?", max_new_tokens: int = 60,
                 temperature: float = 1.0, generator=None) -> tuple[torch.Tensor, bool]:
    """Continue `ids` token by token (full distribution at `temperature`) until a token whose text holds one of
    `stops` (a sentence end) is drawn; returns the ids and whether a stop came within `max_new_tokens`."""
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()[None]
    for _ in range(max_new_tokens):
        ids = model.generate(ids, 1, temperature=temperature, generator=generator)
        if any(c in encoding.decode([int(ids[0, -1])]) for c in stops):
            return ids[0], True
    return ids[0], False


def sample_logprobs(model: GPT, ids: torch.Tensor, n_samples: int, n_tokens: int, generator=None) -> torch.Tensor:
    """Draw `n_samples` continuations of `n_tokens` tokens after `ids` from the model (temperature 1, no top-k) and
    return the model's log-probability of each drawn token, (n_samples, n_tokens): minus their mean estimates the
    entropy of the model's own next-token distribution along its samples."""
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    drawn = model.generate(ids[None].repeat(n_samples, 1), n_tokens, generator=generator)
    return torch.stack([token_logprobs(model, row)[len(ids) - 1:] for row in drawn])


@torch.no_grad()
def sampled_token_odds(model: GPT, ids: torch.Tensor, position: int, temperature: float = 1.0,
                       top_k: int | None = None) -> dict:
    """How token ids[position] stood when it was drawn from the prefix ids[:position]: its probability under the
    model ('p'), under the sampling rule that drew it (temperature, top-k: 'p_sampling', 0 if outside the top k),
    and its rank among all tokens ('rank', 1 = the most likely)."""
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    if not 1 <= position < len(ids):
        raise ValueError(f"position {position} must lie in 1..{len(ids) - 1} (it needs a prefix)")
    logits = model.last_logits(ids[None, max(0, position - model.config.block_size):position])[0].double()
    tok = ids[position]
    scaled = logits / temperature
    if top_k is not None:
        kth = torch.topk(scaled, min(top_k, len(scaled))).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    return {"p": float(F.softmax(logits, -1)[tok]), "p_sampling": float(F.softmax(scaled, -1)[tok]),
            "rank": int((logits > logits[tok]).sum()) + 1}


@torch.no_grad()
def target_probs(model: GPT, embeddings: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """p(target_i) at each position i when `embeddings` (T, C) replace the token embeddings (as in `invert`): the
    forward check of what one input vector does, e.g. after swapping it for a row of the embedding table."""
    target = torch.as_tensor(target, dtype=torch.long).flatten()
    model.eval()
    logits, _ = model.forward_embeddings(torch.as_tensor(embeddings, dtype=torch.float32)[None])
    probs = F.softmax(logits[0].double(), dim=-1)
    return probs[torch.arange(len(target)), target]


@torch.no_grad()
def cosines_to_mean_row(model: GPT) -> torch.Tensor:
    """The cosine of each token-embedding row with the mean row (the inversion's start), (vocab,)."""
    weight = model.wte.weight
    return F.cosine_similarity(weight, weight.mean(0, keepdim=True), dim=-1)


def top_overlap(a, b, k: int, m: int) -> tuple[int, float]:
    """How many of the k highest entries of `a` are among the m highest of `b` (same positions), and the count
    expected by chance if the k were drawn at random from the n positions: k·m/n."""
    a, b = torch.as_tensor(a).flatten(), torch.as_tensor(b).flatten()
    if a.shape != b.shape or not (1 <= k <= len(a) and 1 <= m <= len(a)):
        raise ValueError(f"need two score vectors of one length n and 1 <= k, m <= n; got {tuple(a.shape)}, "
                         f"{tuple(b.shape)}, k={k}, m={m}")
    top_a, top_b = set(a.topk(k).indices.tolist()), set(b.topk(m).indices.tolist())
    return len(top_a & top_b), k * m / len(a)


@torch.no_grad()
def piece_losses(model: GPT, tokens: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Cut `tokens` into consecutive pieces of n_tokens + 1 (a remainder is dropped) and return, per piece, the
    model's mean cross-entropy (nats per token) of its last n_tokens given its first token: the measure that
    `sample_logprobs` gives the model's own samples, on real text. Consecutive pieces of one text are not
    independent draws."""
    tokens = torch.as_tensor(tokens, dtype=torch.long).flatten()
    n = len(tokens) // (n_tokens + 1)
    if n == 0:
        raise ValueError(f"{len(tokens)} tokens make no piece of {n_tokens + 1}")
    rows = tokens[: n * (n_tokens + 1)].view(n, n_tokens + 1)
    return torch.stack([-token_logprobs(model, row).mean() for row in rows])
