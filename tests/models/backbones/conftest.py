"""Helpers shared by the backbone tests, given as fixtures that return the
helper function (test modules do not import conftest files)."""
import pytest
import torch
from torch import nn


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine, so a mis-mapped BN shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def _assert_maps_close(outs, expected, atol: float = 1e-5, rtol: float = 0.0) -> None:
    """As many maps as expected, each of the same shape and within
    ``atol + rtol * |expected|`` everywhere."""
    assert len(outs) == len(expected)
    for out, exp in zip(outs, expected):
        assert out.shape == exp.shape
        torch.testing.assert_close(out, exp, atol=atol, rtol=rtol)


def _assert_declared_outputs(model: nn.Module, outs, input_size: int) -> None:
    """The declared ``out_channels`` / ``out_strides`` are those of the maps
    returned for a square ``input_size`` input."""
    assert model.out_channels == tuple(o.shape[1] for o in outs)
    assert model.out_strides == tuple(input_size // o.shape[-1] for o in outs)


@pytest.fixture(scope="session")
def randomise_batchnorm():
    return _randomise_batchnorm


@pytest.fixture(scope="session")
def assert_maps_close():
    return _assert_maps_close


@pytest.fixture(scope="session")
def assert_declared_outputs():
    return _assert_declared_outputs
