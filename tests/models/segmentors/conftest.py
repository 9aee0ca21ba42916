"""MONAI reference networks for the equivalence tests (MONAI and einops are
test dependencies)."""
import pytest


@pytest.fixture
def monai_nets():
    """``monai.networks.nets``."""
    import einops  # noqa: F401 - declared test dependencies (the references)
    from monai.networks import nets
    return nets
