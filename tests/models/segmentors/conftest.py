"""MONAI reference networks for the equivalence tests (with an einops
stand-in when einops is not installed, see ``einops_standin.py``)."""
import pytest

from einops_standin import Rearrange


@pytest.fixture
def monai_nets(monkeypatch):
    """``monai.networks.nets``, usable without einops."""
    pytest.importorskip("monai")
    try:
        import einops  # noqa: F401
    except ImportError:
        from monai.networks.blocks import patchembedding, selfattention
        monkeypatch.setattr(selfattention, "Rearrange", Rearrange)
        monkeypatch.setattr(patchembedding, "Rearrange", Rearrange)
    from monai.networks import nets
    return nets
