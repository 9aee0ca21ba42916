"""The plugin contract: every hook point of the toolbox, in one module.

A plugin is a module (or object) that implements some of the hooks below,
decorated with :data:`hookimpl` (defined here beside the hookspecs; plugins
import it as ``toolbox.plugins.hookimpl``, the same object). A distribution makes it
discoverable by declaring an entry point in the ``toolbox.plugins`` group::

    [project.entry-points."toolbox.plugins"]
    my_plugin = "my_package.toolbox_plugin"

After ``pip install``, every name the plugin returns can be used as
``type=...`` in any config; no import line and no config change is needed.
The built-in components are registered through these same hooks.

Every hook takes no arguments and returns the components to register, as
either a list of classes (registered under ``cls.__name__``) or a mapping of
``name -> class``. To replace a component that another plugin already
provides, wrap it: ``{"VoVNet": toolbox.plugins.override(MyVoVNet)}``; the
replacement is shown when a run starts. Without ``override``, two providers
of one name in one hook point is an error naming both distributions, raised
when a config looks that name up (the other names keep working).

Hooks are called once, lazily, on the first registry lookup. Keep the plugin
module's top level cheap; importing torch there is fine. Do not look a
registry up from a hook (the registries fill only after every hook has
answered): to reuse a built-in, import its class, e.g.
``from toolbox.models.necks.fpn import FPN``. A plugin module may declare
the plugin API versions it supports, ``TOOLBOX_API = ">=1,<2"``
(:data:`toolbox.plugins.API_VERSION` is this contract's version).
A function named ``toolbox_*`` that is not marked ``@hookimpl``, or a marked
one whose name is not below, is warned about: it would register nothing.
"""
import pluggy

hookspec = pluggy.HookspecMarker("toolbox")
#: Marks a plugin's hook functions (``@hookimpl def toolbox_necks(): ...``).
hookimpl = pluggy.HookimplMarker("toolbox")

#: The hook points, in the order the toolbox loads them. Each name is also the
#: registry name in :mod:`toolbox.registry` and the section in ``toolbox plugins``.
HOOK_POINTS = (
    "backbones",
    "necks",
    "heads",
    "losses",
    "models",
    "datasets",
    "transforms",
    "metrics",
    "hooks",
    "functions",
)


@hookspec
def toolbox_backbones():
    """Return feature extractors (``nn.Module`` classes).

    Contract: ``forward(images: Tensor[B, 3, H, W]) -> tuple[Tensor, ...]``,
    one map per entry of ``out_indices``. Each instance declares
    ``output_shape() -> tuple[FeatureSpec, ...]`` (``toolbox.structures``:
    channels and stride of each returned map), which the model hands to the
    neck / head as ``input_shape``, and ``size_divisor``, the multiple the
    input height and width must be padded to (``spatial_dims``: 2, or 3 for
    volumes). Take ``out_indices``, ``frozen_stages`` and ``norm_eval`` where
    they make sense; subclassing :class:`toolbox.models.backbones.base.Backbone`
    gives those, and ``self.declare_outputs(channels, strides,
    size_divisor=...)`` declares the outputs (``out_channels`` /
    ``out_strides`` remain as deprecated read-only views for one release).
    """


@hookspec
def toolbox_necks():
    """Return multi-scale fusion modules (``nn.Module`` classes).

    Contract: take ``input_shape: Sequence[FeatureSpec] | None`` (the
    previous part's ``output_shape()``; models always pass it unless the
    config sets ``in_channels``), ``forward(tuple[Tensor, ...]) ->
    tuple[Tensor, ...]``, and declare ``output_shape()`` (and
    ``size_divisor``, 1 if none) like a backbone. Subclassing
    :class:`toolbox.models.necks.base.Neck` gives ``resolve_inputs`` (the
    ``in_channels`` / ``in_strides`` of direct construction reconciled with
    ``input_shape``). A neck without ``input_shape`` (nor ``**kwargs``) still
    gets ``in_channels`` / ``in_strides`` filled, with a DeprecationWarning.
    """


@hookspec
def toolbox_heads():
    """Return task heads (``nn.Module`` classes).

    Contract: ``loss(feats, data_samples) -> dict[str, Tensor]`` (every key
    containing ``loss`` is summed into the training objective; other keys
    are logged) and ``predict(feats, data_samples)``. A head owns its target
    assignment and decoding, and takes ``input_shape: Sequence[FeatureSpec]
    | None`` (the neck's or backbone's ``output_shape()``; DETR passes its
    last map only; segmentors also pass ``spatial_dims``), keeping
    ``in_channels`` / ``strides`` for direct construction. Heads predict in
    the network input's (``img_shape``) coordinates; the detector maps boxes
    back to the original image once (``toolbox.structures.boxes_to_original``).
    What ``predict`` returns depends on the model that calls it:

    * detection heads (``SingleStageDetector``, ``DETR``): ``list[InstanceData]``
      with ``bboxes``, ``scores``, ``labels`` in ``img_shape`` coordinates;
    * RPN heads (``TwoStageDetector``): the same, class-agnostic, plus
      ``loss_and_predict(feats, data_samples, proposal_cfg)`` returning the
      losses and detached proposals in ``img_shape`` coordinates;
    * RoI heads: ``loss(feats, proposals, data_samples)`` and
      ``predict(feats, proposals, data_samples)`` (``img_shape`` coordinates);
    * segmentation heads (``EncoderDecoder``): logits ``[B, K, *spatial]``;
      the segmentor maps them back to the original frame.
    """


@hookspec
def toolbox_losses():
    """Return criteria (``nn.Module`` classes) used as ``loss_*`` of heads.

    Contract: ``forward(pred, target, weight=None, avg_factor=None) -> Tensor``
    (a scalar with the default ``reduction='mean'``), multiplied by the
    loss's ``loss_weight``.

    * classification losses (``loss_cls``): ``pred`` logits ``[N, C]``;
      ``target`` long class indices ``[N]`` in ``[0, C]`` where ``C`` means
      background, or a float ``[N, C]`` (one-hot or soft); a class attribute
      ``use_sigmoid = True`` tells the head to predict ``C`` scores (no
      background column; ``False``: ``C + 1`` with softmax);
    * box losses (``loss_bbox``): ``pred`` / ``target`` ``[N, 4]`` deltas, or
      boxes (x1 y1 x2 y2) when the class sets ``expects_boxes = True``;
    * ``weight``: per sample ``[N]``, or broadcastable to ``pred``;
    * ``avg_factor``: the sum is divided by it when given (heads pass the
      number of positives, at least 1), else the loss is averaged;
    * an image without objects gives all-background targets, and no
      positives gives empty ``pred`` / ``target``: both must give a finite
      loss (``toolbox.testing.check_loss`` checks all of this).

    A loss that needs training-set statistics declares
    ``needs_class_frequencies = True`` and a method
    ``set_class_frequencies(instance_counts, image_counts, num_images=None)``
    (``num_images`` is passed only when the method accepts it); the engine
    calls it with counts computed from the training dataset before training.
    """


@hookspec
def toolbox_models():
    """Return meta-architectures: detectors and segmentors.

    Contract: an ``mmengine.model.BaseModel`` whose ``forward(inputs,
    data_samples, mode)`` supports ``mode`` in ``{'loss', 'predict',
    'tensor'}``; it builds its parts from the backbone/neck/head registries.
    """


@hookspec
def toolbox_datasets():
    """Return datasets (``torch.utils.data.Dataset`` classes).

    Contract: items are ``dict(inputs=Tensor[3, H, W], data_samples=...)``
    after the pipeline; ``metainfo['classes']`` names the categories; a
    dataset that can, implements ``class_frequencies()`` for long-tail losses.
    Bad files raise :class:`toolbox.errors.DataError` naming the path.
    """


@hookspec
def toolbox_transforms():
    """Return data pipeline steps (callables ``dict -> dict``).

    A transform takes the result dict (``img``, ``gt_bboxes``,
    ``gt_labels``, optional ``gt_masks``) and returns it updated; geometric
    transforms keep boxes and masks in sync and record what they did in the
    image meta so predictions map back to the original image.
    """


@hookspec
def toolbox_metrics():
    """Return evaluation metrics (``mmengine.evaluator.BaseMetric`` classes)."""


@hookspec
def toolbox_hooks():
    """Return runner hooks (``mmengine.hooks.Hook`` classes).

    Registered in the ``toolbox`` child of mmengine's ``HOOKS`` root, so
    ``default_hooks`` / ``custom_hooks`` of a config with
    ``default_scope='toolbox'`` find them, also under a plain
    ``mmengine.runner.Runner.from_cfg``. A hook takes its settings as
    constructor arguments and must not assume the toolbox's own runner.
    """


@hookspec
def toolbox_functions():
    """Return functions named by configs, e.g. collate functions.

    Registered in the ``toolbox`` child of mmengine's ``FUNCTIONS`` root
    (``collate_fn=dict(type='toolbox.det_collate')``). Return a mapping
    ``name -> function`` (a list registers each under its ``__name__``). A
    collate function takes the list of dataset items (and its own keyword
    arguments) and returns the batch the model's ``data_preprocessor`` reads.
    """
