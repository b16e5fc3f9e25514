"""The last encoder block at the one position a classifier reads.

A BERT-style sequence classifier reads only the first token's hidden state (its
pooler, or RoBERTa's and ELECTRA's heads, take ``hidden_states[:, 0]``). In the
last block every other position is therefore wasted work, except as keys and
values of the attention: the queries, the attention output, the residual, the
layer norms and the feed-forward layers are needed at position 0 alone. For a
few dozen tokens per sentence that is most of the block.

:func:`first_position_forward` computes such a block at position 0 from the
block's own submodules (so ``functional_call`` overrides and replays still apply
to them) and returns ``(batch, 1, hidden)``. :func:`supports_first_position`
says whether a model has the structure it relies on; callers must still check
the result against a normal forward (:class:`pruning.sensitivity.SensitivityProbe`
does, on every evaluation batch, before it uses it).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
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
    """``block(hidden_states, attention_mask)`` at position 0 only: shape ``(batch, 1, hidden)``."""
    sa = block.attention.self
    batch, length, _ = hidden_states.shape
    heads, size = sa.num_attention_heads, sa.attention_head_size
    first = hidden_states[:, :1]

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(batch, x.shape[1], heads, size).transpose(1, 2)

    mask = attention_mask
    if mask is not None and mask.dim() == 4 and mask.shape[-2] == length:
        mask = mask[..., :1, :]  # the query row of position 0
    scale = getattr(sa, "scaling", size**-0.5)
    q, k, v = split(sa.query(first)), split(sa.key(hidden_states)), split(sa.value(hidden_states))
    attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    attn = attn.transpose(1, 2).reshape(batch, 1, heads * size)
    return block.feed_forward_chunk(block.attention.output(attn, first))


def use_first_position(block: nn.Module) -> None:
    """Make ``block`` (a private copy's, never a shared model's) compute position 0 only."""
    block.forward = types.MethodType(first_position_forward, block)
