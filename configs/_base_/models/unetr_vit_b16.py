# UNETR as in the paper (Hatamizadeh et al., WACV 2022): ViT-B/16 encoder on
# 96^3 CT patches (hidden 768, 12 layers, 12 heads, MLP 3072), decoder with
# feature_size 16, residual conv blocks and instance norm; Dice + CE loss.
# 92.78M parameters (MONAI's UNETR: 92,802,478 incl. 18,432 unused LayerNorm
# parameters; paper: 92.58M).
img_size = 96
model = dict(
    type="EncoderDecoder",
    data_preprocessor=dict(type="SegDataPreprocessor", pad_size_divisor=16),
    backbone=dict(type="ViT", in_channels=1, img_size=img_size, spatial_dims=3, patch_size=16,
                  hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072, proj_type="conv",
                  dropout_rate=0.0, out_indices=(3, 6, 9, 11)),
    decode_head=dict(type="UNETRHead", num_classes=14, feature_size=16,
                     norm_cfg=dict(type="IN"), res_block=True,
                     loss_decode=dict(type="DiceCELoss", squared_pred=True, smooth_nr=0.0,
                                      smooth_dr=1e-6)),
    # Sliding windows of the training patch size; 0.5 overlap as the authors'
    # research code's default (infer_overlap).
    test_cfg=dict(mode="slide", roi_size=(img_size,) * 3, overlap=0.5, blend="gaussian",
                  sw_batch_size=1),
)
