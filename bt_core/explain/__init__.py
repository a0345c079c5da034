"""Explanation: Grad-CAM and Grad-CAM++ heatmaps (:mod:`~bt_core.explain.gradcam`, the maths) kept apart
from drawing them over the slice (:mod:`~bt_core.explain.overlay`)."""
