"""configs/reference/detr_r50_official.py is the official DETR-R50: with
converted random weights it gives HF transformers' DetrForObjectDetection's
detections and losses (HF's DETR is the runnable reference of the official
release; same configuration, no download).

Inference runs through ``Inferencer`` (config -> test pipeline -> model ->
post-processing); HF gets the very pixels and padding mask the toolbox model
got, and its own ``post_process_object_detection``. The resize is shrunk for
speed (the official resize is PIL-based and the toolbox's is cv2 bilinear, so
the comparison is on the same pixels, not on the same resize).
"""
import copy
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from toolbox.apis import Inferencer
from toolbox.apis.inferencer import CheckpointMismatchError
from toolbox.convert import convert_checkpoint
from toolbox.convert.base import ConversionError
from toolbox.convert.detr import LAYOUTS, convert_hf, convert_official

import transformers  # noqa: E402,F401 - a declared test dependency (the reference)
from transformers import DetrConfig, DetrForObjectDetection  # noqa: E402
from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss  # noqa: E402
from transformers.models.detr.image_processing_detr import DetrImageProcessor  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs/reference/detr_r50_official.py")
SCALE = (320, 192)  # (long, short) instead of (1333, 800), for a fast CPU test
BOX_TOL, SCORE_TOL, LOSS_RTOL = 1e-3, 1e-4, 1e-5


def hf_config(**kw):
    return DetrConfig(use_timm_backbone=True, backbone="resnet50", use_pretrained_backbone=False,
                      num_labels=91, dropout=0.0, **kw)


def normalised(img):
    mean = torch.tensor([123.675, 116.28, 103.53])[:, None, None]
    std = torch.tensor([58.395, 57.12, 57.375])[:, None, None]
    return ((torch.from_numpy(img).permute(2, 0, 1).float() - mean) / std)[None]


def gain(name):
    """Xavier gains that keep a random DETR from collapsing (every query
    alike): peaked attention, spread class scores, boxes not saturated."""
    if "q_proj" in name or "k_proj" in name or "class_labels" in name:
        return 3.0
    return 2.0 if "bbox_predictor.layers.2" in name else 1.0


@pytest.fixture(scope="module")
def hf_model():
    """HF DETR-R50 with every weight and FrozenBN statistic random (seeded)."""
    torch.manual_seed(0)
    model = DetrForObjectDetection(hf_config()).eval()
    with torch.no_grad():
        for name, buf in model.named_buffers():  # FrozenBN statistics and affine
            if name.endswith("running_mean") or name.endswith(".bias"):
                buf.normal_(0.0, 0.1)
            elif name.endswith("running_var") or name.endswith(".weight"):
                buf.uniform_(0.5, 1.5)
        for name, p in model.named_parameters():
            if "backbone" in name:
                continue  # timm's random init
            if "query_position" in name:
                p.normal_(0.0, 1.0)  # nn.Embedding's (and DETR's) init
            elif p.dim() > 1:
                torch.nn.init.xavier_uniform_(p, gain=gain(name))
            elif "norm" in name and name.endswith("weight"):
                p.uniform_(0.8, 1.2)
            else:
                p.normal_(0.0, 0.05)
        # C5 of this random backbone is ~500 +- 300: centre and scale the input
        # projection so the encoder sees varied unit-scale features (as trained)
        c5 = model.model.backbone.model(normalised(images()[0]))[-1]
        proj = model.model.input_projection
        proj.weight.div_(c5.std(dim=(2, 3)).mean())
        proj.bias.copy_(-proj.weight[:, :, 0, 0] @ c5.mean(dim=(0, 2, 3)))
    return model


def official_layout(hf_state):
    """The DETR authors' key layout, derived from HF's state dict by hand
    (independent of toolbox.convert.detr)."""
    out = {}
    fused = {}
    for key, value in hf_state.items():
        k = key
        if k.startswith("model.backbone.model."):
            k = "backbone.0.body." + k[len("model.backbone.model."):]
        elif k.startswith("model.encoder.") or k.startswith("model.decoder."):
            k = "transformer." + k[len("model."):]
            enc = k.startswith("transformer.encoder.")
            k = k.replace("encoder_attn_layer_norm", "norm2")
            k = k.replace("self_attn_layer_norm", "norm1")
            k = k.replace("final_layer_norm", "norm2" if enc else "norm3")
            k = k.replace("encoder_attn.", "multihead_attn.")
            k = k.replace("mlp.fc1", "linear1").replace("mlp.fc2", "linear2")
            k = k.replace("o_proj", "out_proj").replace("decoder.layernorm", "decoder.norm")
            m = re.fullmatch(r"(.*)\.([qkv])_proj\.(weight|bias)", k)
            if m:
                fused.setdefault((m[1], m[3]), {})[m[2]] = value
                continue
        else:
            k = {"model.query_position_embeddings.weight": "query_embed.weight"}.get(k, k)
            k = k.replace("model.input_projection", "input_proj")
            k = k.replace("class_labels_classifier", "class_embed")
            k = k.replace("bbox_predictor", "bbox_embed")
        out[k] = value
    for (prefix, kind), parts in fused.items():
        out[f"{prefix}.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return {"model": out}


def small_config(**head):
    cfg = Config.fromfile(CONFIG)
    for step in cfg.test_dataloader.dataset.pipeline:
        if step["type"] == "Resize":
            step["scale"] = SCALE
    cfg.model.bbox_head.transformer.dropout = 0.0
    cfg.model.bbox_head.update(head)
    return cfg


def checkpoint(state, path):
    torch.save({"state_dict": state, "meta": {}}, path)
    return str(path)


def images():
    """Two smooth non-square RGB images (h x w = 150 x 200 and 190 x 140)."""
    rng = np.random.default_rng(0)
    out = []
    for h, w in ((150, 200), (190, 140)):
        low = rng.uniform(0, 255, (h // 10 + 2, w // 10 + 2, 3)).astype(np.float32)
        img = np.kron(low, np.ones((10, 10, 1), np.float32))[:h, :w]
        out.append((img + rng.normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8))
    return out


def run_toolbox(infer, imgs):
    """Detections, and the padded batch and metainfo the model saw."""
    seen = []
    hook = infer.model.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        results = infer(imgs, batch_size=len(imgs))
    finally:
        hook.remove()
    assert len(seen) == 1
    return results, seen[0]


def pixel_mask(samples, batch):
    mask = torch.zeros(batch.shape[0], *batch.shape[-2:], dtype=torch.long)
    for i, s in enumerate(samples):
        h, w = s.metainfo["img_shape"][:2]
        mask[i, :h, :w] = 1
    return mask


def run_hf(model, samples, batch):
    with torch.no_grad():
        outputs = model(pixel_values=batch, pixel_mask=pixel_mask(samples, batch))
    sizes = [tuple(s.metainfo["ori_shape"][:2]) for s in samples]
    return DetrImageProcessor().post_process_object_detection(outputs, threshold=0.0,
                                                              target_sizes=sizes)


def assert_same_detections(results, references):
    for got, ref in zip(results, references):
        pred = got.pred_instances
        order = torch.sort(ref["scores"], descending=True, stable=True).indices
        scores, labels, boxes = ref["scores"][order], ref["labels"][order], ref["boxes"][order]
        assert len(pred.scores) == len(scores) == 100
        assert torch.equal(pred.labels, labels)  # same labels in the same ranking
        assert (pred.scores - scores).abs().max() < SCORE_TOL
        assert (pred.bboxes - boxes).abs().max() < BOX_TOL
        # the case has teeth: boxes reach past the image, scores spread out
        assert scores[0] - scores[-1] > 0.05
        h, w = got.metainfo["ori_shape"][:2]
        assert ((boxes[:, 0] < 0) | (boxes[:, 2] > w) | (boxes[:, 1] < 0) | (boxes[:, 3] > h)).any()


@pytest.mark.parametrize("layout", ["detr-hf", "detr-official"])
def test_inference_equals_hf(hf_model, layout, tmp_path):
    # the user's path: a reference file -> tools/convert_weights.py (layout
    # detected) -> Inferencer
    state = hf_model.state_dict()
    src = tmp_path / "reference.pth"
    torch.save(state if layout == "detr-hf" else official_layout(state), src)
    meta = convert_checkpoint(str(src), str(tmp_path / "detr.pth"))
    assert meta["format"] == layout
    infer = Inferencer(small_config(), str(tmp_path / "detr.pth"), score_thr=0.0)
    imgs = images()
    # each image alone (two non-square sizes), then both in one padded batch
    runs = [[imgs[0]], [imgs[1]], imgs] if layout == "detr-hf" else [imgs]
    for batch_imgs in runs:
        results, batch = run_toolbox(infer, batch_imgs)
        assert_same_detections(results, run_hf(hf_model, results, batch))


def hf4_layout(hf_state):
    """transformers 4's names for the same weights (``conv_encoder.``,
    ``out_proj``, ``fc1``/``fc2`` directly on the layer)."""
    def rename(k):
        k = k.replace("model.backbone.model.", "model.backbone.conv_encoder.model.")
        return k.replace(".o_proj.", ".out_proj.").replace(".mlp.fc", ".fc")
    return {rename(k): v for k, v in hf_state.items()}


def test_official_and_hf_layouts_convert_to_the_same_weights(hf_model):
    state = hf_model.state_dict()
    a, b = convert_hf(state), convert_official(official_layout(state))
    c = convert_hf(hf4_layout(state))
    assert set(a) == set(b) == set(c)
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
    assert [lay.name for lay in LAYOUTS if lay.detect(list(state))] == ["detr-hf"]
    official = official_layout(state)["model"]
    assert [lay.name for lay in LAYOUTS if lay.detect(list(official))] == ["detr-official"]


def training_batch(infer):
    """Both images through the test pipeline with ground-truth boxes
    (COCO-id labels), collated as the config's dataloader does."""
    from toolbox.datasets.collate import det_collate
    from toolbox.datasets.transforms.base import init_geometry
    items = []
    gts = [([[10, 20, 90, 120], [100, 30, 190, 140], [50, 60, 70, 80]], [1, 18, 90]),
           ([[5, 5, 130, 180], [40, 50, 100, 90]], [62, 1])]
    for i, (img, (boxes, labels)) in enumerate(zip(images(), gts)):
        results = init_geometry(dict(img=img, img_id=i, gt_bboxes=np.asarray(boxes, np.float32),
                                     gt_labels=np.asarray(labels, np.int64)))
        items.append(infer.array_pipeline(results))
    return det_collate(items, **{k: v for k, v in infer.cfg.test_dataloader.collate_fn.items()
                                 if k != "type"})


def test_test_step_on_the_configs_batches_equals_hf(hf_model, tmp_path):
    """tools/test.py's path: the config's collate pads only to the batch's
    largest image (no size divisor), as the official DETR batches."""
    infer = Inferencer(small_config(), checkpoint(convert_hf(hf_model.state_dict()),
                                                  tmp_path / "detr.pth"))
    batch = training_batch(infer)
    shapes = [s.metainfo["img_shape"] for s in batch["data_samples"]]
    padded = infer.model.data_preprocessor(batch, False)["inputs"]  # as test_step pads
    assert tuple(padded.shape[-2:]) == tuple(max(s[i] for s in shapes) for i in (0, 1))
    with torch.no_grad():
        results = infer.model.test_step(batch)
    assert_same_detections(results, run_hf(hf_model, results, padded))


def test_training_losses_equal_hf(hf_model, tmp_path):
    infer = Inferencer(small_config(), checkpoint(convert_hf(hf_model.state_dict()),
                                                  tmp_path / "detr.pth"))
    model = infer.model.train()
    data = model.data_preprocessor(training_batch(infer), True)
    losses = model(**data, mode="loss")

    inputs, samples = data["inputs"], data["data_samples"]
    labels = []
    for s in samples:
        h, w = s.metainfo["img_shape"][:2]
        boxes = s.gt_instances.bboxes / torch.tensor([w, h, w, h], dtype=torch.float32)
        cxcywh = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)
        labels.append({"class_labels": s.gt_instances.labels, "boxes": cxcywh})
    hf = copy.deepcopy(hf_model).train()
    out = hf(pixel_values=inputs, pixel_mask=pixel_mask(samples, inputs), labels=labels,
             output_hidden_states=True)
    # HF's own loss of the last decoder layer (weights 1 / 5 / 2 as in DETR)
    ref = {"loss_cls": out.loss_dict["loss_ce"], "loss_bbox": 5 * out.loss_dict["loss_bbox"],
           "loss_iou": 2 * out.loss_dict["loss_giou"]}
    # Aux losses: HF's auxiliary_loss=True feeds each layer the *normalised*
    # output of the previous one (and normalises the last twice), which the
    # official DETR does not; so take the official intermediate outputs (every
    # layer's output through the decoder's final LayerNorm) from HF's hidden
    # states and give them to HF's loss function.
    inter = hf.model.decoder.layernorm(torch.stack(out.decoder_hidden_states[1:]))
    _, aux_dict, _ = ForObjectDetectionLoss(
        out.logits, labels, inputs.device, out.pred_boxes, hf_config(auxiliary_loss=True),
        hf.class_labels_classifier(inter), hf.bbox_predictor(inter).sigmoid())
    for i in range(5):
        ref.update({f"d{i}.loss_cls": aux_dict[f"loss_ce_{i}"],
                    f"d{i}.loss_bbox": 5 * aux_dict[f"loss_bbox_{i}"],
                    f"d{i}.loss_iou": 2 * aux_dict[f"loss_giou_{i}"]})
    assert set(losses) == set(ref)
    for key, value in ref.items():
        assert losses[key].item() == pytest.approx(value.item(), rel=LOSS_RTOL), key
    # the same gradients reach the weights
    sum(losses.values()).backward()
    sum(ref.values()).backward()
    head = model.bbox_head
    for got, want in ((head.class_embed.weight, hf.class_labels_classifier.weight),
                      (head.query_embed.weight, hf.model.query_position_embeddings.weight),
                      (model.backbone.layer4[2].conv3.weight,
                       hf.model.backbone.model.layer4[2].conv3.weight)):
        assert (got.grad - want.grad).abs().max() <= 1e-4 * want.grad.abs().max()


def test_bad_checkpoints_are_named(hf_model, tmp_path):
    import torchvision
    tv = torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None)
    with pytest.raises(ConversionError, match=r"detr-official.*key\(s\).*'backbone\.body\."):
        convert_official(tv.state_dict())
    with pytest.raises(ConversionError, match="detr-hf"):
        convert_hf(tv.state_dict())
    # 20 classes + no object do not fit the 91-class reference config
    state = convert_hf(hf_model.state_dict())
    for key in ("bbox_head.class_embed.weight", "bbox_head.class_embed.bias"):
        state[key] = state[key][:21]
    path = checkpoint(state, tmp_path / "voc_detr.pth")
    with pytest.raises(CheckpointMismatchError, match=r"voc_detr\.pth.*class_embed\.weight"):
        Inferencer(small_config(), path)


@pytest.mark.slow
def test_tools_test_writes_hf_detections_as_coco_ids(hf_model, tmp_path):
    """tools/test.py on a COCO-format folder, 2 images per batch as the
    official evaluation: the results JSON holds HF's detections, label ==
    COCO category id."""
    import json
    import subprocess
    import sys

    import cv2
    root = tmp_path / "coco"
    (root / "val").mkdir(parents=True)
    entries, anns = [], []
    for i, img in enumerate(images()):
        cv2.imwrite(str(root / "val" / f"{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        entries.append(dict(id=i + 1, file_name=f"{i}.png", height=img.shape[0],
                            width=img.shape[1]))
        anns.append(dict(id=i + 1, image_id=i + 1, category_id=18, iscrowd=0,
                         bbox=[10.0, 15.0, 40.0, 50.0], area=2000.0))
    ann_file = root / "instances_val.json"
    ann_file.write_text(json.dumps(dict(images=entries, annotations=anns,
                                        categories=[dict(id=18, name="dog")])))
    torch.save(hf_model.state_dict(), tmp_path / "hf.pth")
    convert_checkpoint(str(tmp_path / "hf.pth"), str(tmp_path / "detr.pth"))
    prefix = tmp_path / "results"
    options = [f"test_dataloader.dataset.data_root={root}/", f"test_dataloader.dataset.ann_file="
               f"{ann_file}", "test_dataloader.dataset.data_prefix.img=val/",
               "test_dataloader.num_workers=0", "test_dataloader.persistent_workers=False",
               f"test_dataloader.dataset.pipeline.1.scale={SCALE}".replace(" ", ""),
               f"test_evaluator.ann_file={ann_file}", f"test_evaluator.outfile_prefix={prefix}"]
    run = subprocess.run([sys.executable, str(ROOT / "tools/test.py"), CONFIG,
                          str(tmp_path / "detr.pth"),
                          "--work-dir", str(tmp_path / "work"), "--cfg-options", *options],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})  # as this process

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    dets = json.loads(Path(f"{prefix}.bbox.json").read_text())

    infer = Inferencer(small_config(), None)  # the same pixels, both images, padded as
    batch = infer.model.data_preprocessor(training_batch(infer), False)  # test_step pads
    for image_id, ref in enumerate(run_hf(hf_model, batch["data_samples"], batch["inputs"]), 1):
        mine = sorted((d for d in dets if d["image_id"] == image_id), key=lambda d: -d["score"])
        order = torch.sort(ref["scores"], descending=True, stable=True).indices
        assert [d["category_id"] for d in mine] == ref["labels"][order].tolist()
        scores = torch.tensor([d["score"] for d in mine])
        assert (scores - ref["scores"][order]).abs().max() < SCORE_TOL
        xywh = torch.tensor([d["bbox"] for d in mine])
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        assert (boxes - ref["boxes"][order]).abs().max() < BOX_TOL
