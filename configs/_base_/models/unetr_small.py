# A small UNETR for CPU runs on 32^3 patches: the paper's architecture with a
# narrow, shallow ViT (hidden 96, 4 layers, 4 heads, MLP 384; every block's
# output feeds the decoder) and feature_size 16, for the 5 classes of the
# synthetic volumes. Volumes are predicted by sliding windows of the training
# patch size.
unetr_img_size = 32
model = dict(
    type="EncoderDecoder",
    # inputs are padded on the device (every side to a multiple of 16, the patch size)
    data_preprocessor=dict(type="SegDataPreprocessor", pad_size_divisor=16),
    backbone=dict(type="ViT", in_channels=1, img_size=unetr_img_size, spatial_dims=3,
                  patch_size=16, hidden_size=96, num_layers=4, num_heads=4, mlp_dim=384,
                  out_indices=(0, 1, 2, 3)),
    decode_head=dict(type="UNETRHead", num_classes=5, feature_size=16,
                     norm_cfg=dict(type="IN"), res_block=True,
                     loss_decode=dict(type="DiceCELoss")),
    test_cfg=dict(mode="slide", roi_size=(unetr_img_size,) * 3, overlap=0.5, blend="gaussian",
                  sw_batch_size=4),
)
