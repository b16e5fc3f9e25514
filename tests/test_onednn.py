"""oneDNN's packed float32 linear: the same products as F.linear, repacked when the weight changes."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pruning.loading import onednn
from pruning.loading.functional import shallow_copy

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this torch build has no oneDNN linear")


def _layer(seed: int, d_in: int = 24, d_out: int = 40, bias: bool = True) -> nn.Linear:
    gen = torch.Generator().manual_seed(seed)
    layer = nn.Linear(d_in, d_out, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(d_out, d_in, generator=gen))
        if bias:
            layer.bias.copy_(torch.randn(d_out, generator=gen))
    return layer


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7, 24), (3, 5, 24), (2, 1, 24)])
def test_packed_linear_gives_the_products_of_f_linear(shape, bias):
    layer = _layer(0, bias=bias)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    packed = onednn.PackedLinear(layer)
    assert packed.weight is layer.weight and packed.bias is layer.bias  # the same parameters, no copy
    with torch.inference_mode():
        got, want = packed(x), F.linear(x, layer.weight, layer.bias)
        exact = F.linear(x.double(), layer.weight.double(), None if layer.bias is None else layer.bias.double())
    assert got.shape == want.shape == (*shape[:-1], 40)
    assert float((got.double() - exact).abs().max()) <= 1e-4  # float32 rounding of sums of 24 products
    assert float((got - want).abs().max()) <= 1e-4


def test_a_swapped_weight_is_packed_again():
    layer, other = _layer(0), _layer(5)
    packed = onednn.PackedLinear(layer)
    x = torch.randn(4, 24, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        first = packed(x)
        packed._parameters["weight"] = other.weight  # what an override put in place does
        swapped = packed(x)
        packed._parameters["weight"] = layer.weight
        back = packed(x)
    assert torch.allclose(swapped, F.linear(x, other.weight, layer.bias), atol=1e-4)
    assert not torch.allclose(first, swapped, atol=1e-2)
    assert torch.equal(first, back)
    with torch.no_grad():
        layer.weight.mul_(2.0)  # the same object, changed in place
    with torch.inference_mode():
        doubled = packed(x)
    assert torch.allclose(doubled, F.linear(x, layer.weight, layer.bias), atol=1e-4)


def test_pack_linears_replaces_the_float32_cpu_linears_of_a_copy_only(tiny_bert):
    model = tiny_bert.model
    linears = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    copy = shallow_copy(model)
    assert onednn.pack_linears(copy) == len(linears)
    assert all(isinstance(copy.get_submodule(n), onednn.PackedLinear) for n in linears)
    assert all(type(m) is nn.Linear for n, m in model.named_modules() if n in linears)  # the shared model untouched
    half = nn.Sequential(nn.Linear(4, 4).to(torch.bfloat16), nn.Linear(4, 4))
    assert onednn.pack_linears(half) == 1 and type(half[0]) is nn.Linear  # bfloat16 stays as it is


def test_packed_copy_gives_the_models_logits(tiny_bert):
    batch = tiny_bert.tokenizer(["a very good film", "the worst plot , boring"], padding=True, return_tensors="pt")
    copy = shallow_copy(tiny_bert.model)
    assert onednn.pack_linears(copy) > 0
    with torch.inference_mode():
        a = tiny_bert.model(**batch).logits
        b = copy(**batch).logits
    assert a.shape == b.shape and float((a - b).abs().max()) <= 1e-4


def test_the_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv("PRUNESCOPE_ONEDNN", "0")
    assert not onednn.available()
    assert onednn.pack_linears(nn.Sequential(nn.Linear(4, 4))) == 0
