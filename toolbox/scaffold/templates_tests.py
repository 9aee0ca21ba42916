"""The test files ``toolbox new-plugin`` writes (conftest, the test module's
head, one test per component kind, its tail), as ``string.Template`` texts;
the placeholders are those of :mod:`toolbox.scaffold.templates`, plus
``$components`` (the generated components' names).
"""

CONFTEST = '''\
"""The toolbox's testing kit: the ``toolbox_plugins`` fixture (fresh plugin state)."""
pytest_plugins = ["toolbox.testing.fixtures"]
'''

TEST_HEAD = '''\
"""$dist: each component meets its hook point's contract, the config is
valid, and it trains. Uses the toolbox's testing kit (``toolbox.testing``)."""
from pathlib import Path

import pytest
from mmengine.config import Config

from toolbox import testing
from toolbox.config_check import check_config
from toolbox.registry import REGISTRIES

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "${ep}_synth.py"
COMPONENTS = $components


@pytest.mark.parametrize("point, name", sorted(COMPONENTS.items(), key=str))
def test_registered_by_this_distribution(point, name):
    assert name in REGISTRIES[point].names()
    assert REGISTRIES[point].providers[name].distribution == "$dist"
'''

TEST_BACKBONE = '''

def test_backbone_declares_what_it_returns():
    testing.check_backbone(dict(type="${Prefix}Net"))
    testing.check_backbone(dict(type="${Prefix}Net", widths=(8, 16, 32, 64), out_indices=(1, 3)),
                           sizes=[(64, 64), (96, 160)])
'''

TEST_NECK = '''

def test_neck_declares_what_it_returns():
    testing.check_neck(dict(type="${Prefix}Neck", out_channels=16, num_outs=4),
                       in_channels=(16, 32, 64), in_strides=(8, 16, 32))


def test_neck_rejects_an_even_kernel():
    with pytest.raises(ValueError, match="kernel_size"):
        REGISTRIES["necks"].build(dict(type="${Prefix}Neck", in_channels=(8,), out_channels=8,
                                       in_strides=(8,), kernel_size=6))
'''

TEST_HEAD_KIND = '''

def test_head_loss_and_predict_on_images_with_and_without_objects():
    out = testing.check_head(dict(type="${Prefix}Head", feat_channels=16, stacked_convs=1,
                                  anchor_generator=dict(octave_base_scale=4, scales_per_octave=1)),
                             in_channels=16, strides=(8, 16), num_classes=3)
    assert set(out["losses"]) >= {"loss_cls", "loss_bbox"}
'''

TEST_LOSS = '''

def test_loss_contract():
    testing.check_loss(dict(type="${Prefix}Loss", smoothing=0.1), kind="classification")
'''

TEST_DATASET = '''

def test_dataset_items_follow_the_contract():
    from toolbox.registry import DATASETS
    dataset = DATASETS.build(dict(type="${Prefix}Dataset", split="val", num_images=4,
                                  test_mode=True, pipeline=[dict(type="LoadImage"),
                                                            dict(type="PackDetInputs")]))
    assert len(dataset) > 0 and dataset.metainfo["classes"]
    item = dataset[0]
    assert item["inputs"].dim() == 3 and "gt_instances" in item["data_samples"]
'''

TEST_TRANSFORM = '''

def test_transform_keeps_boxes_and_labels():
    out = testing.check_transform(dict(type="${Prefix}Transform", prob=1.0, seed=0))
    img = out["img"]
    assert (img[..., 0] == img[..., 1]).all()  # gray
'''

TEST_METRIC = '''

def test_metric_counts_matches():
    from toolbox.registry import METRICS
    metric = METRICS.build(dict(type="${Prefix}Metric"))
    sample = testing.det_sample([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1]).to_dict()
    sample["pred_instances"] = dict(bboxes=[[0, 0, 10, 10]], scores=[0.9], labels=[0])
    metric.process({}, [sample])
    assert metric.compute_metrics(metric.results) == {"recall": 0.5}
'''

TEST_TAIL = '''

def test_config_is_valid_before_anything_is_built():
    check_config(Config.fromfile(str(CONFIG)))


def test_config_trains_two_steps(tmp_path):
    result = testing.smoke_train(CONFIG, steps=2, num_images=4, work_dir=str(tmp_path))
    assert len(result["losses"]) == 2
'''
