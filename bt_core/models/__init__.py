"""Models and training: the networks, the offline EfficientNet-Lite backbones, fitting and the paper's protocol, devices.

- :mod:`~bt_core.models.networks`: the paper's CNNs and the transfer models (``keras`` only).
- :mod:`~bt_core.models.efficientnet_lite`: EfficientNet-Lite0 and Lite1 in Keras with converted ImageNet weights.
- :mod:`~bt_core.models.training`: one fit, or the paper's protocol (k-fold CV, final fit, test), as a run.
- :mod:`~bt_core.models.patch`, :mod:`~bt_core.models.patch_training`: the patch model (cells scored, masks as
  a training signal) and its fast training on cached activations.
- :mod:`~bt_core.models.sources_fit`: several sources in training (strata, per-source figures, views, balance).
- :mod:`~bt_core.models.sampling`: sampling weights (per source family and class, per slice position) and draws.
- :mod:`~bt_core.models.loso`: leave-one-source-out.
- :mod:`~bt_core.models.runtime`: the machine a run ran on (for its record) and the Keras dtype policy.
- :mod:`~bt_core.models.distribute`: data parallel training and folds in parallel across GPUs.
- :mod:`~bt_core.models.sweep`: grids of runs as Ray tasks (``python -m bt_core sweep``); the grid itself
  (sweep file, ``--set``) in :mod:`~bt_core.models.sweep_grid`.
"""
