"""Serving: answering uploads with a saved run (:mod:`~bt_core.serving.inference`), a whole scan slice by slice
(:mod:`~bt_core.serving.volume`) and launching training
jobs from the app (:mod:`~bt_core.serving.launcher`). Used by the command line and the pages."""
