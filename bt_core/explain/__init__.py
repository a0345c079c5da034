"""Explanation: Grad-CAM and Grad-CAM++ heatmaps (:mod:`~bt_core.explain.gradcam`, the maths; the model side,
target layer and gradients, in :mod:`~bt_core.explain.gradcam_model`) kept apart from drawing them over the
slice (:mod:`~bt_core.explain.overlay`); :mod:`~bt_core.explain.pointing` checks them against expert masks."""
