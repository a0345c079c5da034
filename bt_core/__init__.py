"""bt_core: brain tumour detection on MRI slices with CNNs (Jardim et al., Br35H), and beyond.

Grouped by concept, as MONAI is:

- ``bt_core.data``: decoding (``images``), whole scans as ordered slices (``series``), labelled folders and
  their cache (``folders``), model input (``prepare``), splits (``splits``), degradations (``degrade``).
- ``bt_core.models``: networks (``networks``), the offline backbone (``lite0``), fitting and the paper's
  protocol (``training``), several devices (``distribute``).
- ``bt_core.evaluation``: ``metrics``, ``stats``, ``calibration``, ``posthoc``, ``ood``, ``probes``,
  ``figures``, ``plots``, ``reproduce``.
- ``bt_core.explain``: ``gradcam`` (the maths) and ``overlay`` (the picture).
- ``bt_core.serving``: ``inference`` (answers), ``volume`` (a scan slice by slice) and ``launcher`` (training
  jobs from the app).
- top level: ``config`` (run configuration, no keras), ``errors``, ``runs`` (registry) and ``cli``
  (``python -m bt_core``), which calls the rest; nothing imports ``cli``.

Nothing here imports streamlit. Results are decision support, not a diagnosis.
"""
import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow C++ start-up lines on stderr
__version__ = "0.1.0"
DISCLAIMER = "Decision support for research and teaching, not a diagnosis: a clinician must read the scan."
