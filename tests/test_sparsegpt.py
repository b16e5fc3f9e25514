"""SparseGPT's solver on single layers with known inputs."""

import pytest
import torch

from pruning.masks import is_nm_valid, keep_count, layer_mask
from pruning.updates.sparsegpt_solver import hessian_inverse_factor, sparsegpt_solve


def _correlated_inputs(d_in=64, n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, d_in // 4, generator=g)
    mix = torch.randn(d_in // 4, d_in, generator=g)
    return base @ mix + 0.1 * torch.randn(n, d_in, generator=g)  # (tokens, d_in), strongly correlated


def _error(W, W2, X):
    return float(torch.linalg.norm(X @ W.T - X @ W2.T))


@pytest.mark.parametrize("granularity", ["layer", "row"])
@pytest.mark.parametrize("sparsity", [0.5, 0.7])
def test_exact_sparsity(granularity, sparsity):
    X = _correlated_inputs()
    W = torch.randn(24, 64)
    U, dead = hessian_inverse_factor(X.T @ X, X.shape[0])
    new, mask = sparsegpt_solve(W, U, sparsity, granularity, dead=dead, blocksize=16)
    if granularity == "layer":
        assert int(mask.sum()) == keep_count(W.numel(), sparsity)
    else:
        assert (mask.sum(dim=1) == keep_count(64, sparsity)).all()
    assert torch.all(new[~mask] == 0)


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8)])
def test_nm_is_valid(n, m):
    X = _correlated_inputs()
    W = torch.randn(24, 64)
    U, dead = hessian_inverse_factor(X.T @ X, X.shape[0])
    new, mask = sparsegpt_solve(W, U, n / m, f"{n}:{m}", dead=dead, blocksize=32)
    assert is_nm_valid(mask, n, m)
    assert is_nm_valid(new != 0, n, m)


@pytest.mark.parametrize("blocksize", [2, 6, 7])
def test_nm_groups_sit_at_absolute_columns_whatever_the_block_size(blocksize):
    X = _correlated_inputs()
    W = torch.randn(24, 64)
    U, dead = hessian_inverse_factor(X.T @ X, X.shape[0])
    new, mask = sparsegpt_solve(W, U, 0.5, "2:4", dead=dead, blocksize=blocksize)
    assert is_nm_valid(mask, 2, 4) and int(mask.sum()) == 24 * 32
    assert is_nm_valid(new != 0, 2, 4)
    # a block size that is a multiple of 4 never needs moving: the same answer as 128
    reference, ref_mask = sparsegpt_solve(W, U, 0.5, "2:4", dead=dead, blocksize=128)
    eight, eight_mask = sparsegpt_solve(W, U, 0.5, "2:4", dead=dead, blocksize=8)
    assert torch.equal(eight_mask, ref_mask) and torch.allclose(eight, reference, atol=1e-4)
    assert torch.equal(mask, ref_mask) and torch.allclose(new, reference, atol=1e-4)  # same math, other batching


@pytest.mark.parametrize("granularity", ["layer", "2:4"])
def test_reconstruction_error_below_magnitude(granularity):
    X = _correlated_inputs()
    W = torch.randn(32, 64)
    U, dead = hessian_inverse_factor(X.T @ X, X.shape[0])
    new, _ = sparsegpt_solve(W, U, 0.5, granularity, dead=dead)
    from pruning.masks import compute_masks

    magnitude = W * compute_masks({"w": W.abs()}, 0.5, granularity)["w"]
    assert _error(W, new, X) < 0.8 * _error(W, magnitude, X)


def test_uncorrelated_inputs_reduce_to_magnitude_pruning():
    """With H proportional to the identity, the OBS saliency is |W|^2 and no error spreads.

    One block spanning all 16 columns, so the mask is chosen over the whole layer at once.
    """
    W = torch.randn(8, 16)
    gram = 3.0 * torch.eye(16)
    U, dead = hessian_inverse_factor(gram, 10, damp=0.0)
    new, mask = sparsegpt_solve(W, U, 0.5, "layer", dead=dead, blocksize=16)
    expected = W.abs() >= W.abs().flatten().kthvalue(W.numel() // 2 + 1).values
    assert torch.equal(mask, expected)
    assert torch.allclose(new, W * mask, atol=1e-6)  # kept weights unchanged


def test_dead_inputs_are_zeroed():
    X = _correlated_inputs(d_in=16, n=64)
    X[:, 3] = 0
    W = torch.randn(4, 16)
    U, dead = hessian_inverse_factor(X.T @ X, X.shape[0])
    assert dead.tolist()[3] and dead.sum() == 1
    new, mask = sparsegpt_solve(W, U, 0.25, "layer", dead=dead, blocksize=8)
    assert torch.all(new[:, 3] == 0)
