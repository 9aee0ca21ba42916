"""A converted torchvision checkpoint evaluated by ``tools/test.py`` on a
COCO-format folder with COCO's own (non-contiguous) category ids: the results
JSON carries torchvision's labels as ``category_id`` (the 91-index space),
boxes and scores as torchvision gives them, and the metric runs on them."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision

from toolbox.convert import convert_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # the same kernels as the subprocess

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/reference/retinanet_r50_fpn_tv.py"
CATEGORIES = [dict(id=1, name="person"), dict(id=3, name="car"), dict(id=18, name="dog"),
              dict(id=90, name="toothbrush")]


def published_retinanet(**kw):
    """What ``retinanet_resnet50_fpn(weights=COCO_V1)`` builds, minus the
    download: FrozenBN with eps 0, P6 from P5."""
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection._utils import overwrite_eps
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7
    from torchvision.ops.misc import FrozenBatchNorm2d
    body = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    model = RetinaNet(backbone, 91, **kw)
    overwrite_eps(model, 0.0)
    return model


def _coco_folder(root: Path, images) -> Path:
    (root / "val").mkdir(parents=True)
    entries, anns = [], []
    for i, img in enumerate(images):
        name = f"img_{i}.png"  # lossless: both models see the same pixels
        cv2.imwrite(str(root / "val" / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        h, w = img.shape[:2]
        entries.append(dict(id=i + 1, file_name=name, height=h, width=w))
        for j, cat in enumerate((1, 18, 90)):
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=cat, iscrowd=0,
                             bbox=[10.0 + 30 * j, 15.0, 40.0, 50.0], area=2000.0))
    ann_file = root / "instances_val.json"
    ann_file.write_text(json.dumps(dict(images=entries, annotations=anns, categories=CATEGORIES)))
    return ann_file


@pytest.mark.slow
def test_tools_test_writes_coco_category_ids_of_the_reference(tmp_path):
    torch.manual_seed(0)
    reference = published_retinanet(min_size=160, max_size=256).eval()
    with torch.no_grad():  # spread the scores so that there are detections above 0.05
        reference.head.classification_head.cls_logits.bias.normal_(-2.0, 1.0)
    src, ckpt = tmp_path / "tv.pth", tmp_path / "converted.pth"
    torch.save(reference.state_dict(), src)
    assert convert_checkpoint(str(src), str(ckpt))["format"] == "tv-retinanet"

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (150, 230, 3), dtype=np.uint8),
              rng.integers(0, 256, (200, 170, 3), dtype=np.uint8)]
    ann_file = _coco_folder(tmp_path / "coco", images)
    prefix = tmp_path / "results"
    options = [f"test_dataloader.dataset.data_root={tmp_path / 'coco'}/",
               f"test_dataloader.dataset.ann_file={ann_file}",
               "test_dataloader.dataset.data_prefix.img=val/",
               "test_dataloader.num_workers=0", "test_dataloader.persistent_workers=False",
               "test_dataloader.dataset.pipeline.2.scale=(256,160)",
               f"test_evaluator.ann_file={ann_file}", f"test_evaluator.outfile_prefix={prefix}"]
    run = subprocess.run([sys.executable, str(ROOT / "tools/test.py"), str(CONFIG), str(ckpt),
                          "--work-dir", str(tmp_path / "work"), "--cfg-options", *options],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})  # as the reference
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "coco/bbox_mAP" in run.stdout + run.stderr
    dets = json.loads(Path(f"{prefix}.bbox.json").read_text())

    with torch.no_grad():  # one image per batch, as the reference configs evaluate
        expected = [reference([torch.from_numpy(im).permute(2, 0, 1).float() / 255])[0]
                    for im in images]
    for image_id, out in enumerate(expected, start=1):
        mine = [d for d in dets if d["image_id"] == image_id]
        assert len(mine) == len(out["labels"]) > 0
        order = sorted(range(len(mine)), key=lambda k: -mine[k]["score"])
        mine = [mine[k] for k in order]
        assert [d["category_id"] for d in mine] == out["labels"].tolist()
        scores = torch.tensor([d["score"] for d in mine])
        torch.testing.assert_close(scores, out["scores"], rtol=0, atol=1e-4)
        xywh = torch.tensor([d["bbox"] for d in mine])
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        torch.testing.assert_close(boxes, out["boxes"], rtol=0, atol=1e-3)
