"""MONAI reference networks for the equivalence tests (MONAI and einops are
test dependencies)."""
import pytest


@pytest.fixture
def monai_nets():
    """``monai.networks.nets``."""
    pytest.importorskip("monai")
    pytest.importorskip("einops")
    from monai.networks import nets
    return nets
