"""The last encoder block at the one position a classifier reads.

A BERT-style sequence classifier reads only the first token's hidden state (its
pooler, or RoBERTa's and ELECTRA's heads, take ``hidden_states[:, 0]``). In the
last block every other position is therefore wasted work, except as keys and
values of the attention: the queries, the attention output, the residual, the
layer norms and the feed-forward layers are needed at position 0 alone. Even the
keys and values need not be projected: their projections fold into the one query
(see :func:`_attend_folded`). For a few dozen tokens per sentence that is nearly
the whole block.

:func:`first_position_forward` computes such a block at position 0 from the
block's own submodules and parameters (so replaced weights and replays still
apply to them) and returns ``(batch, 1, hidden)``. :func:`supports_first_position`
says whether a model has the structure it relies on; callers must still check
the result against a normal forward (:class:`pruning.analysis.sensitivity.SensitivityProbe`
does, on every evaluation batch, before it uses it).
"""

from __future__ import annotations

import types

import torch
from torch import nn

# heads that read the first position only (the pooler / the <s> token), on BERT-layout blocks
FIRST_POSITION_HEADS = (
    "BertForSequenceClassification",
    "RobertaForSequenceClassification",
    "XLMRobertaForSequenceClassification",
    "ElectraForSequenceClassification",
)


def _bert_layout(block: nn.Module) -> bool:
    att = getattr(block, "attention", None)
    sa = getattr(att, "self", None)
    parts = (getattr(sa, "query", None), getattr(sa, "key", None), getattr(sa, "value", None))
    return (
        all(isinstance(p, nn.Linear) for p in parts)
        and hasattr(sa, "num_attention_heads")
        and hasattr(sa, "attention_head_size")
        and hasattr(att, "output")
        and callable(getattr(block, "feed_forward_chunk", None))
        and not getattr(block, "add_cross_attention", False)
        and not getattr(block, "is_decoder", False)
    )


def supports_first_position(model: nn.Module, block: nn.Module) -> bool:
    """Whether ``model``'s head reads the first position only and ``block`` has BERT's layout."""
    return type(model).__name__ in FIRST_POSITION_HEADS and _bert_layout(block)


def first_position_forward(block: nn.Module, hidden_states: torch.Tensor, attention_mask=None, *args, **kwargs) -> torch.Tensor:
    """``block(hidden_states, attention_mask)`` at position 0 only: shape ``(batch, 1, hidden)``.

    The attention folds the key and value projections into the query (:func:`_attend_folded`),
    so no position but the first goes through a linear layer; a pruned ``key`` or ``value``
    weight (a replaced parameter) is used as it is."""
    sa = block.attention.self
    batch, length, _ = hidden_states.shape
    heads, size = sa.num_attention_heads, sa.attention_head_size
    first = hidden_states[:, :1]

    mask = attention_mask
    if mask is not None and mask.dim() == 4 and mask.shape[-2] == length:
        mask = mask[..., :1, :]  # the query row of position 0
    scale = getattr(sa, "scaling", size**-0.5)
    q = sa.query(first).view(batch, heads, size) * scale
    attn = _attend_folded(q, sa.key, sa.value, hidden_states, mask, heads, size)
    return block.feed_forward_chunk(block.attention.output(attn.reshape(batch, 1, heads * size), first))


def _attend_folded(q: torch.Tensor, key: nn.Linear, value: nn.Linear, x: torch.Tensor, mask, heads: int, size: int) -> torch.Tensor:
    """One query per sequence attending over every position, without the keys and values.

    With ``K = x Wk^T + bk`` and ``V = x Wv^T + bv`` (per head), ``q . K_t = (q Wk) . x_t + q . bk``
    and ``sum_t p_t V_t = (sum_t p_t x_t) Wv^T + bv`` (the weights sum to 1). So the scores need
    ``q Wk`` (one vector per head) dotted with each position, and the output the weighted mean of
    the positions projected once: per token ``2 * heads * hidden`` products instead of the
    ``2 * hidden * hidden`` of projecting every key and value. ``q``: (batch, heads, size),
    already scaled; returns (batch, heads, size)."""
    wk = key.weight.view(heads, size, -1)
    scores = torch.einsum("bhk,btk->bht", torch.einsum("bhd,hdk->bhk", q, wk), x)
    if key.bias is not None:
        scores = scores + (q * key.bias.view(heads, size)).sum(dim=-1, keepdim=True)
    if mask is not None:
        row = mask[:, :, 0, :] if mask.dim() == 4 else mask  # (batch, 1 or heads, positions)
        scores = scores.masked_fill(~row, float("-inf")) if row.dtype == torch.bool else scores + row
    probs = torch.softmax(scores, dim=-1)
    mean = torch.einsum("bht,btk->bhk", probs, x)
    out = torch.einsum("bhk,hdk->bhd", mean, value.weight.view(heads, size, -1))
    return out + value.bias.view(heads, size) if value.bias is not None else out


def use_first_position(block: nn.Module) -> None:
    """Make ``block`` (a private copy's, never a shared model's) compute position 0 only."""
    block.forward = types.MethodType(first_position_forward, block)
