"""Using a shared model with other weights, without touching it.

``torch.func.functional_call`` swaps parameters *on the module itself* for the
duration of the call, so two threads calling it on one shared model race: one
thread can run with the other's weights. ``with_overrides`` instead builds a
private shallow copy: a new module tree whose untouched parameters and buffers
are the very same tensors as the original's (no memory is copied) and whose
overridden parameters are the given tensors. Building it costs a few
milliseconds; the shared model is never modified, so any number of threads can
each evaluate their own masks at once.
"""

from __future__ import annotations

import copy
import itertools
from typing import Mapping

import torch
from torch import nn


def shallow_copy(module: nn.Module, share=()) -> nn.Module:
    """A structural copy of ``module`` that shares every parameter and buffer tensor
    (and the objects in ``share``, e.g. accelerate's hooks)."""
    memo = {id(t): t for t in itertools.chain(module.parameters(), module.buffers(), share)}
    return copy.deepcopy(module, memo)


def with_overrides(module: nn.Module, overrides: Mapping[str, torch.Tensor] | None) -> nn.Module:
    """``module`` itself when there is nothing to override, else a shallow copy with
    ``overrides`` (``named_parameters`` keys -> tensors) put in place."""
    if not overrides:
        return module
    clone = shallow_copy(module)
    for key, value in overrides.items():
        owner_name, _, attr = key.rpartition(".")
        owner = clone.get_submodule(owner_name) if owner_name else clone
        if attr not in owner._parameters:
            raise KeyError(f"{key} is not a parameter of the model")
        owner._parameters[attr] = nn.Parameter(value.detach(), requires_grad=False)
    return clone
