"""Serving: answering uploads with a saved run (:mod:`~bt_core.serving.inference`; the first answers through
LiteRT without waiting for Keras, :mod:`~bt_core.serving.lite`), a whole scan slice by slice
(:mod:`~bt_core.serving.volume`) and launching training jobs from the app (:mod:`~bt_core.serving.launcher`,
with what a job runs in :mod:`~bt_core.serving.jobspec`, the data-folder fence in
:mod:`~bt_core.serving.data_roots` and the on/off rule in :mod:`~bt_core.serving.switch`). Used by the
command line and the pages."""
