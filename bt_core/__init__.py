"""bt_core: brain tumour detection on MRI slices with CNNs (Jardim et al., Br35H), and beyond.

Modules, one concept each: ``images`` (safe decoding), ``data`` (folders and cache), ``splits``
(holdout, k-fold, near-duplicate groups), ``models``, ``lite0`` (offline ImageNet backbone),
``training``, ``metrics``, ``calibration``, ``stats``, ``gradcam`` and ``overlay``, ``ood``,
``runs`` (registry), ``inference``, ``launcher`` and ``cli``. Nothing here imports streamlit.
Results are decision support, not a diagnosis.
"""
import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
__version__ = "0.1.0"
DISCLAIMER = "Decision support for research and teaching, not a diagnosis: a clinician must read the scan."
