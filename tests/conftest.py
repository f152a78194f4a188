import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# Small input sizes keep the full-size architectures cheap in tests; counts at 224x224 are tested
# separately.
MODEL_INPUTS = {
    "mobilenet_v1_small": (1, 28, 28),
    "resnet_small": (3, 32, 32),
    "mobilenet_v1": (3, 64, 64),
    "resnet50": (3, 64, 64),
    "resnet18": (3, 64, 64),
}
