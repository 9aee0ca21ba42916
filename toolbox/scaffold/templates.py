"""The files ``toolbox new-plugin`` writes, as ``string.Template`` texts.

Placeholders: ``$dist`` (distribution, ``toolbox-cbam``), ``$pkg`` (import
package, ``toolbox_cbam``), ``$ep`` (entry-point name, ``cbam``), ``$Prefix``
(class-name prefix, ``Cbam``), ``$api`` (the plugin API range),
``$toolbox_version``.
"""

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A toolbox plugin: $summary"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["toolbox>=$toolbox_version", "torch"]

[project.optional-dependencies]
test = ["pytest>=8"]

# The one line that makes the components usable from any config:
[project.entry-points."toolbox.plugins"]
$ep = "$pkg.plugin"

[tool.setuptools.packages.find]
include = ["$pkg*"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

README = '''\
# $dist

A [toolbox](https://github.com/) plugin providing: $summary.

```bash
pip install -e .                    # registers the components (entry point '$ep')
toolbox plugins $first              # signature, defaults, docstring, distribution
python -m pytest tests              # contract tests + a 2-step smoke training
python tools/train.py configs/${ep}_synth.py     # from the toolbox checkout, or:
toolbox train configs/${ep}_synth.py --cfg-options short_run.max_iters=20 short_run.num_images=16
```

Every name below is usable as `type=...` in any config, with no import line:

$table

Layout: `$pkg/plugin.py` holds the hook implementations (the entry-point
module, `TOOLBOX_API` declares the plugin API versions it supports); one
component per file next to it; `configs/${ep}_synth.py` trains them on the
toolbox's synthetic shapes; `tests/` checks each component's contract with
`toolbox.testing`. The guide: `docs/plugin_authoring.md` in the toolbox.
'''

INIT = '''\
"""$dist: a toolbox plugin ($summary)."""
__version__ = "0.1.0"
'''

PLUGIN_HEAD = '''\
"""The entry-point module: one hook implementation per hook point used.

The toolbox calls these hooks lazily, the first time a config looks a
component up; returning the classes is all the registration there is.
Import your modules inside the hooks (not at the top) so ``import toolbox``
and ``toolbox plugins`` stay fast, and never look a registry up here: to
reuse a built-in, import its class (``from toolbox.models.necks.fpn import FPN``).
"""
from toolbox.plugins import hookimpl

#: The toolbox plugin API versions this plugin works with (PEP 440); a
#: toolbox outside this range refuses to load it, naming both versions.
TOOLBOX_API = "$api"
'''

HOOK = '''

@hookimpl
def toolbox_$point():
    from $pkg.$module import $cls
    return [$cls]
'''

BACKBONE = '''\
"""${Prefix}Net: a small plain conv backbone showing the backbone contract."""
from torch import nn

from toolbox.models.backbones.base import Backbone


def _conv_bn_relu(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ${Prefix}Net(Backbone):
    """A stride-2 stem, then one stride-2 stage per entry of ``widths``.

    Contract (``toolbox_backbones``): ``forward(images [B, 3, H, W])`` returns
    a tuple with one map per ``out_indices`` entry, and the instance declares
    them with ``declare_outputs(channels, strides, size_divisor=...)``, read
    back as ``output_shape()`` (one ``FeatureSpec`` per map), so necks and
    heads get their ``input_shape``. ``Backbone`` provides
    ``frozen_stages`` (stem = stage 0) and ``norm_eval`` from ``stages()``.

    Args:
        widths: channels of each stage.
        out_indices: which stages to return (0 = the first stage, stride 4).
        frozen_stages: freeze the stem and this many stages (-1: none).
        norm_eval: keep BatchNorm layers in eval mode while training.
    """

    def __init__(self, widths=(16, 32, 64), out_indices=(0, 1, 2), frozen_stages=-1,
                 norm_eval=False, init_cfg=None):
        super().__init__(frozen_stages=frozen_stages, norm_eval=norm_eval, init_cfg=init_cfg)
        if not out_indices or max(out_indices) >= len(widths):
            raise ValueError(f"out_indices {tuple(out_indices)} must index widths {tuple(widths)}")
        self.stem = _conv_bn_relu(3, widths[0], 2)
        chans = (widths[0],) + tuple(widths)
        self.layers = nn.ModuleList(_conv_bn_relu(chans[i], chans[i + 1], 2)
                                    for i in range(len(widths)))
        self.out_indices = tuple(out_indices)
        self.declare_outputs(channels=[widths[i] for i in self.out_indices],
                             strides=[2 ** (i + 2) for i in self.out_indices],
                             size_divisor=2 ** (len(widths) + 1))

    def stages(self):
        return [self.stem, *self.layers]

    def forward(self, x):
        x = self.stem(x)
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
'''

NECK = '''\
"""${Prefix}Neck: the built-in FPN followed by a spatial-attention gate per level.

Shows reusing a built-in: subclass (or wrap) its class, imported directly.
"""
import torch
from torch import nn

from toolbox.models.necks.fpn import FPN


class ${Prefix}Neck(FPN):
    """FPN whose every output is multiplied by a spatial attention map
    ``sigmoid(conv_k([mean_c(x), max_c(x)]))`` (CBAM's spatial branch).

    Contract (``toolbox_necks``): takes ``input_shape`` (the backbone's
    ``output_shape()``; ``in_channels`` / ``in_strides`` for direct use),
    ``forward(tuple) -> tuple``, declares its outputs (FPN does).

    Args:
        kernel_size: odd size of the attention conv.
        **fpn: the arguments of :class:`toolbox.models.necks.fpn.FPN`
            (``out_channels``, ``num_outs``, ``add_extra_convs``, ...).
    """

    def __init__(self, kernel_size=7, **fpn):
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        super().__init__(**fpn)
        self.gates = nn.ModuleList(nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
                                   for _ in self.output_shape())

    def forward(self, feats):
        outs = super().forward(feats)
        gated = []
        for x, gate in zip(outs, self.gates):
            pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
            gated.append(x * torch.sigmoid(gate(pooled)))
        return tuple(gated)
'''

HEAD = '''\
"""${Prefix}Head: RetinaHead with a learnable scale per level on the box outputs."""
import torch
from torch import nn

from toolbox.models.heads.retina_head import RetinaHead


class ${Prefix}Head(RetinaHead):
    """The built-in :class:`RetinaHead` (anchors, assignment, focal loss,
    decoding) with one learnable scalar per level multiplying the box
    regression (as FCOS does); everything else is inherited.

    Contract (``toolbox_heads``): ``loss(feats, data_samples) -> dict`` (keys
    with ``loss`` are summed), ``predict(feats, data_samples)`` ->
    ``list[InstanceData]`` (``bboxes`` in the network input's coordinates:
    the detector maps them back to the original image, ``scores``,
    ``labels``); takes ``input_shape`` (the neck's ``output_shape()``);
    ``num_classes`` must match the dataset.

    Args:
        init_scale: the scales' start value.
        **retina: the arguments of :class:`RetinaHead`.
    """

    def __init__(self, num_classes, init_scale=1.0, **retina):
        if init_scale <= 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale}")
        super().__init__(num_classes, **retina)
        self.scales = nn.Parameter(torch.full((len(self.strides),), float(init_scale)))

    def forward(self, feats):
        cls_scores, bbox_preds = super().forward(feats)
        return cls_scores, [p * s for p, s in zip(bbox_preds, self.scales)]
'''

LOSS = '''\
"""${Prefix}Loss: sigmoid binary cross-entropy with label smoothing."""
import torch
import torch.nn.functional as F
from torch import nn

from toolbox.models.losses.reduction import expand_weight, weight_reduce_loss


class ${Prefix}Loss(nn.Module):
    """``BCE(sigmoid(pred), smoothed one-hot target)`` per (sample, class).

    Contract (``toolbox_losses``), the one dense heads call as ``loss_cls``:
    ``forward(pred [N, C] logits, target, weight=None, avg_factor=None)``
    where ``target`` is long class indices ``[N]`` with ``C`` meaning
    background, or a float ``[N, C]``; ``weight`` is per sample ``[N]`` (or
    broadcastable to ``[N, C]``); the summed loss is divided by
    ``avg_factor`` (the number of positives) when given, else averaged.
    ``use_sigmoid = True`` tells the head to predict ``C`` scores (no
    background column). Empty inputs give 0.

    Args:
        smoothing: label smoothing in [0, 1).
        loss_weight: multiplier of the result.
    """

    use_sigmoid = True

    def __init__(self, smoothing=0.0, loss_weight=1.0):
        super().__init__()
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing, self.loss_weight = float(smoothing), float(loss_weight)

    def forward(self, pred, target, weight=None, avg_factor=None):
        if not torch.is_floating_point(target):
            target = F.one_hot(target.long(), pred.shape[1] + 1)[:, :pred.shape[1]]
        target = target.to(pred.dtype) * (1 - self.smoothing) + self.smoothing / 2
        loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
        weight = expand_weight(weight, loss, "${Prefix}Loss")
        if avg_factor is None:  # summed over classes, averaged over samples
            avg_factor = max(pred.shape[0], 1)
        # the toolbox's shared reduction (toolbox.models.losses.reduction)
        return self.loss_weight * weight_reduce_loss(loss, weight, "mean", avg_factor)
'''

DATASET = '''\
"""${Prefix}Dataset: COCO-format detection data with this plugin's classes."""
from toolbox.datasets.coco import CocoDataset
from toolbox.datasets.synthetic import SyntheticCocoDataset


class ${Prefix}Dataset(CocoDataset):
    """Reads a COCO JSON (``data_root/ann_file``, images in ``data_root/img_dir``).

    Contract (``toolbox_datasets``): items are ``dict(inputs, data_samples)``
    after the pipeline; ``metainfo['classes']`` names the classes (here
    ``METAINFO``); ``class_frequencies()`` (inherited) serves long-tail
    losses; bad files raise ``toolbox.errors.DataError`` naming the path.
    To read another format, subclass ``toolbox.datasets.base.DetDataset``
    and implement ``load_data_list()`` (see its docstring for the record).

    Without ``data_root`` it reads the toolbox's synthetic shapes (made on
    first use, offline), so the plugin's config trains out of the box.

    Args:
        split: ``train`` / ``val`` (the synthetic set's split when no data_root).
        num_images: synthetic images to make (no data_root only).
        **coco: the arguments of :class:`CocoDataset` (``pipeline``, ...).
    """

    METAINFO = dict(classes=SyntheticCocoDataset.METAINFO["classes"])

    def __init__(self, data_root=None, split="train", num_images=None, ann_file=None,
                 img_dir="JPEGImages", **coco):
        if data_root is None:
            synthetic = SyntheticCocoDataset(split=split, num_images=num_images)
            data_root = synthetic.data_root
            ann_file = ann_file or f"annotations/instances_{split}.json"
        if ann_file is None:
            raise ValueError("ann_file is required with data_root")
        super().__init__(data_root=data_root, ann_file=ann_file, img_dir=img_dir, **coco)
'''

TRANSFORM = '''\
"""${Prefix}Transform: random grayscale, a pixel-only pipeline step."""
import numpy as np


class ${Prefix}Transform:
    """Turn the image gray with probability ``prob`` (channels kept).

    Contract (``toolbox_transforms``): a callable ``dict -> dict`` on the
    result dict (``img`` uint8 HxWx3, ``gt_bboxes`` float32 [N, 4],
    ``gt_labels`` int64 [N], ``img_shape``, ...); geometric steps must move
    boxes and masks with the image and record what they did in the meta (see
    ``toolbox/datasets/base.py``); pixel-only steps like this one leave them.

    Args:
        prob: probability of applying it.
        seed: seed of its random generator (None: nondeterministic).
    """

    def __init__(self, prob=0.2, seed=None):
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob = float(prob)
        self.rng = np.random.default_rng(seed)

    def __call__(self, results):
        if self.rng.random() < self.prob:
            img = results["img"].astype(np.float32)
            gray = img @ np.array([0.299, 0.587, 0.114], np.float32)
            results["img"] = np.repeat(gray[..., None], 3, axis=2).round().astype(np.uint8)
        return results

    def __repr__(self):
        return f"${Prefix}Transform(prob={self.prob})"
'''

METRIC = '''\
"""${Prefix}Metric: recall of the ground-truth boxes at one IoU threshold."""
import torch
from mmengine.evaluator import BaseMetric
from torchvision.ops import box_iou


def _field(sample, name):
    return sample[name] if isinstance(sample, dict) else getattr(sample, name)


class ${Prefix}Metric(BaseMetric):
    """Share of (non-ignored) ground-truth boxes matched by a prediction of
    their class with IoU >= ``iou_thr`` and score >= ``score_thr``.

    Contract (``toolbox_metrics``): an ``mmengine`` ``BaseMetric``:
    ``process(data_batch, data_samples)`` stores what ``compute_metrics``
    needs (samples arrive as dicts with ``pred_instances`` and
    ``ori_gt_instances``, both in original-image coordinates);
    ``compute_metrics(results) -> dict[str, float]``, keys prefixed by
    ``default_prefix``.

    Args:
        iou_thr: IoU needed for a match.
        score_thr: predictions below this score are ignored.
    """

    default_prefix = "$ep"

    def __init__(self, iou_thr=0.5, score_thr=0.05, collect_device="cpu", prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not 0 < iou_thr <= 1:
            raise ValueError(f"iou_thr must be in (0, 1], got {iou_thr}")
        self.iou_thr, self.score_thr = float(iou_thr), float(score_thr)

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            pred, gt = _field(sample, "pred_instances"), _field(sample, "ori_gt_instances")
            keep = torch.as_tensor(_field(pred, "scores")) >= self.score_thr
            boxes = torch.as_tensor(_field(pred, "bboxes"))[keep].reshape(-1, 4).float()
            labels = torch.as_tensor(_field(pred, "labels"))[keep]
            gt_boxes = torch.as_tensor(_field(gt, "bboxes")).reshape(-1, 4).float()
            gt_labels = torch.as_tensor(_field(gt, "labels"))
            matched = 0
            if len(gt_boxes) and len(boxes):
                iou = box_iou(gt_boxes, boxes)
                iou[gt_labels[:, None] != labels[None, :]] = 0
                matched = int((iou.max(1).values >= self.iou_thr).sum())
            self.results.append((matched, len(gt_boxes)))

    def compute_metrics(self, results):
        matched = sum(m for m, _ in results)
        total = sum(n for _, n in results)
        return {"recall": matched / total if total else 0.0}
'''

CONFIG = '''\
# Trains this plugin's components on the toolbox's synthetic shapes (made on
# first use, offline). Self-contained: no _base_, so it works from anywhere.
#   toolbox train configs/${ep}_synth.py
#   toolbox train configs/${ep}_synth.py --cfg-options short_run.max_iters=20 short_run.num_images=16
default_scope = "toolbox"
image_size = 128
num_classes = 6  # circle, square, triangle, star, hexagon, cross

model = dict(
    type="SingleStageDetector",
    # uint8 images in; normalised and padded on the model's device
    data_preprocessor=dict(type="DetDataPreprocessor", mean=(123.675, 116.28, 103.53),
                           std=(58.395, 57.12, 57.375), pad_size_divisor=32),
    backbone=$backbone,
    neck=$neck,
    bbox_head=dict(
        type="$head",
        num_classes=num_classes,
        feat_channels=32,
        stacked_convs=1,
        norm_cfg=dict(type="GN", num_groups=8),
        anchor_generator=dict(octave_base_scale=2, scales_per_octave=2, ratios=(0.5, 1.0, 2.0)),
        loss_cls=$loss_cls,
        loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
        test_cfg=dict(nms_pre=500, score_thr=0.05, iou_thr=0.5, max_per_img=50),
    ),
)

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="Resize", scale=(image_size, image_size), keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),$transform
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="Resize", scale=(image_size, image_size), keep_ratio=True),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(
    batch_size=4, num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="toolbox.det_collate"),
    dataset=dict(type="$dataset", split="train", pipeline=train_pipeline$dataset_args))
val_dataloader = dict(
    batch_size=4, num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="toolbox.det_collate"),
    dataset=dict(type="$dataset", split="val", test_mode=True, pipeline=test_pipeline$dataset_args))
test_dataloader = val_dataloader
val_evaluator = [$metric]
test_evaluator = val_evaluator

max_epochs = 4
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=2e-3, weight_decay=0.05),
                     clip_grad=dict(max_norm=10.0))
param_scheduler = [dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=50)]
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=20),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=1),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
               dist_cfg=dict(backend="gloo"))
log_processor = dict(type="LogProcessor", window_size=20, by_epoch=True)
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0)
'''

# the generated test files' templates
from toolbox.scaffold.templates_tests import (  # noqa: E402,F401
    CONFTEST, TEST_BACKBONE, TEST_DATASET, TEST_HEAD, TEST_HEAD_KIND, TEST_LOSS, TEST_METRIC,
    TEST_NECK, TEST_TAIL, TEST_TRANSFORM)
