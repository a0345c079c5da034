"""Serving: answering uploads with a saved run (:mod:`~bt_core.serving.inference`) and launching training
jobs from the app (:mod:`~bt_core.serving.launcher`). Used by the command line and the pages."""
