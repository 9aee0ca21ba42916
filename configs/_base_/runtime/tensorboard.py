# TensorBoard logging, as a mix-in: add this file to a config's _base_ list
# next to default_runtime.py (or next to any complete config), e.g.
#   _base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py",
#             "../_base_/runtime/tensorboard.py"]
# Scalars (losses, lr, metrics) then go both to
# <work_dir>/<timestamp>/vis_data/scalars.json (mmengine's LocalVisBackend, the
# default, what tools/plot_logs.py reads) and to TensorBoard event files in the
# same vis_data folder (mmengine's TensorboardVisBackend; needs `tensorboard`):
#   tensorboard --logdir work_dirs/<config name>
visualizer = dict(type="Visualizer",
                  vis_backends=[dict(type="LocalVisBackend"),
                                dict(type="TensorboardVisBackend")])
