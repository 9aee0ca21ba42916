"""ONNX export checked with onnxruntime, the ONNX post-processing against the
PyTorch predict path, and tools/analyze.py's counts."""
import cv2
import onnx
import onnxruntime as ort
import pytest
import torch

from toolbox.apis import Inferencer
from toolbox.apis.onnx_export import postprocess_outputs, preprocess
from toolbox.registry import MODELS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_export_onnx_matches_pytorch(trained, tool, tmp_path, capsys):
    config, checkpoint, _ = trained
    out = tmp_path / "tiny.onnx"
    report = tool("export_onnx").main([str(config), str(checkpoint), "--out", str(out),
                                       "--shape", "64", "64"])
    assert "max abs diff of raw outputs" in capsys.readouterr().out
    onnx.checker.check_model(onnx.load(str(out)))
    assert report["raw_max_abs_diff"] < 1e-4
    assert report["num_dets"][0] == report["num_dets"][1] > 0
    assert report["box_max_abs_diff"] < 1e-3
    assert report["output_names"][0] == "cls_score_0" and len(report["output_names"]) == 10

    # onnxruntime + the documented post-processing == the PyTorch predict
    # path (Inferencer), on a real image of another size than the traced one
    image = cv2.cvtColor(cv2.imread(str(next((config.parent / "data" / "val" / "JPEGImages")
                                             .glob("*.jpg")))), cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (64, 24))  # 24x64, padded to 32x64: not the traced 64x64
    inferencer = Inferencer(str(config), str(checkpoint), score_thr=0.0)
    expected = inferencer(image).pred_instances
    inputs, meta = preprocess(image, inferencer.array_pipeline, 32,
                              inferencer.model.data_preprocessor)
    assert inputs.shape[2:] == (32, 64)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = postprocess_outputs(session.run(None, {"images": inputs}),
                              inferencer.model.bbox_head, [meta])[0]
    assert len(got) == len(expected) > 0
    torch.testing.assert_close(got.bboxes, expected.bboxes, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(got.scores, expected.scores, atol=1e-5, rtol=1e-4)
    assert torch.equal(got.labels, expected.labels)


def test_analyze_counts_parameters_and_flops(trained, tool, capsys):
    from mmengine.config import Config
    config = trained[0]
    report = tool("analyze").main([str(config), "--shape", "64", "64"])
    printed = capsys.readouterr().out
    model = MODELS.build(Config.fromfile(str(config)).model)
    total = sum(p.numel() for p in model.parameters())
    assert report["params"]["total"] == total == report["params"]["trainable"]
    assert f"{total:,}" in printed
    for part in ("backbone", "neck", "bbox_head"):
        assert report["params"]["parts"][part][0] == sum(
            p.numel() for p in getattr(model, part).parameters())
    # FLOPs of one 3x3 conv, by hand: 2 * k*k*C_in * C_out * H_out * W_out
    head_conv = model.bbox_head.retina_reg
    h = w = 64 // 8  # P3 of a 64x64 input
    conv_flops = 2 * 9 * head_conv.in_channels * head_conv.out_channels * h * w
    flops = report["flops"]
    assert flops["total"] > flops["parts"]["bbox_head"] > conv_flops
    assert sum(flops["parts"].values()) == flops["total"]


def test_analyze_flops_of_a_single_conv_by_hand(tool):
    class OneConv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x, mode="tensor"):
            return self.conv(x)
    flops = tool("analyze").count_flops(OneConv(), (16, 16))
    assert flops["total"] == 2 * 3 * 9 * 8 * 16 * 16
    assert flops["parts"] == {"conv": flops["total"]}
