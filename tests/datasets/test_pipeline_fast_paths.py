"""The data pipeline's fast paths (benchmarks/data_pipeline.py) change no
value: Normalize's OpenCV path gives exactly the floats of the NumPy
expression ``(img / scale - mean) / std``; det_collate's images are put in
shared memory inside DataLoader workers (the batching function's single-copy
batch equals pad-then-stack: tests/models/test_data_preprocessor.py)."""
import numpy as np
import pytest
import torch

from toolbox.datasets.collate import det_collate
from toolbox.datasets.transforms.normalize import Normalize
from toolbox.structures import DetDataSample


@pytest.mark.parametrize("kwargs", [
    {}, dict(scale=255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))])
@pytest.mark.parametrize("shape", [(37, 55, 3), (480, 640, 3)])
def test_matches_numpy_bit_for_bit(kwargs, shape):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, shape, dtype=np.uint8)[:, ::-1]  # a non-contiguous view
    norm = Normalize(**kwargs)
    x = img.astype(np.float32)
    if norm.scale != 1:
        x = x / norm.scale
    expected = (x - norm.mean) / norm.std
    out = norm(dict(img=img))["img"]
    assert out.dtype == np.float32 and out.shape == shape
    assert np.array_equal(out, expected)
    assert img.dtype == np.uint8  # the input is left alone
    # float input (e.g. after a float transform) takes the same path
    assert np.array_equal(norm(dict(img=img.astype(np.float32)))["img"], expected)


def test_det_collate_in_a_worker_uses_shared_memory():
    items = [dict(inputs=torch.full((3, 40, 40), float(i)), data_samples=DetDataSample())
             for i in range(4)]
    loader = torch.utils.data.DataLoader(items, batch_size=2, num_workers=1,
                                         collate_fn=det_collate)
    batches = list(loader)
    assert all(x.is_shared() for x in batches[0]["inputs"])
    assert [float(x[0, 0, 0]) for x in batches[1]["inputs"]] == [2.0, 3.0]
