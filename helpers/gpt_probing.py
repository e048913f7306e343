"""Looking inside a trained `GPT`: input inversion, words and their tokens, attention to the context."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .gpt import GPT


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
    at every position equals the target (None if never).
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
        nearest = F.cosine_similarity(emb[0, :, None, :], model.wte.weight[None], dim=-1).argmax(-1)
    return {"embeddings": emb.detach()[0], "losses": losses, "correct": correct, "exact_step": exact_step,
            "prediction": logits[0].argmax(-1), "nearest_tokens": nearest}


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
