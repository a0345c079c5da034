"""bt_core: brain tumour detection on MRI slices with CNNs (Jardim et al., Br35H), and beyond.

Grouped by concept, as MONAI is:

- ``bt_core.data``: decoding (``images``), whole scans as ordered slices (``series``, with the readers
  ``dicom_series`` and ``nifti`` and the ``volume`` type), labelled folders and their cache (``folders``),
  several sources (``sources``), model input (``prepare``), splits (``splits``), degradations and
  augmentation (``degrade``, ``augment``), uploaded zips (``archive``).
- ``bt_core.models``: networks (``networks``, ``patch``), the offline backbones (``efficientnet_lite``), fitting and the
  paper's protocol (``training``, ``patch_training``, ``sources_fit``), leave-one-source-out (``loso``),
  several devices (``distribute``), sweeps on Ray (``sweep`` and its grid, ``sweep_grid``).
- ``bt_core.evaluation``: ``metrics``, ``stats``, ``calibration``, ``posthoc``, ``ood``, ``abstain``,
  ``plane``, ``scoring``, ``probes``, ``figures``, ``plots``, ``reproduce``.
- ``bt_core.explain``: ``gradcam`` (the maths) and ``gradcam_model`` (target layer, gradients), ``overlay``
  (the picture), ``pointing`` (heatmaps against expert masks).
- ``bt_core.serving``: ``inference`` (answers), ``lite`` (the LiteRT answer path), ``volume`` (a scan slice
  by slice), ``launcher`` (training jobs from the app) with ``jobspec``, ``data_roots`` and ``switch``.
- top level: ``config`` (run configuration, no keras), ``errors``, ``runs`` (registry), ``progress``,
  ``quiet`` (Keras imported without backend notices) and the ``cli`` package (``python -m bt_core``), which
  calls the rest; nothing imports ``cli``.

Nothing here imports streamlit. Results are decision support, not a diagnosis.
"""
import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow C++ start-up lines on stderr
__version__ = "0.1.0"
DISCLAIMER = "Decision support for research and teaching, not a diagnosis: a clinician must read the scan."
