"""The dashboard's entry point: page setup and navigation (``streamlit run streamlit_app.py``).

Pages live in ``pages/``: checking slices with the shipped models, the cross-validation explorer,
test-set ROC and calibration, the models on sources they never saw (leave-one-source-out), scoring
your own labelled data, and the training launcher. Decision support, not a diagnosis.
"""
import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # pages import `pages.common` and `bt_core` from the repository
    sys.path.insert(0, str(ROOT))

st.set_page_config(page_title="Brain tumour MRI — decision support", page_icon=":material/neurology:",
                   layout="wide")
st.navigation([
    st.Page("pages/diagnose.py", title="Check slices", icon=":material/radiology:", default=True),
    st.Page("pages/scan.py", title="Check a scan", icon=":material/stacks:"),
    st.Page("pages/explore.py", title="Cross-validation", icon=":material/table_chart:"),
    st.Page("pages/roc.py", title="Test-set ROC", icon=":material/show_chart:"),
    st.Page("pages/unseen.py", title="Unseen sources", icon=":material/travel_explore:"),
    st.Page("pages/score.py", title="Score your data", icon=":material/fact_check:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
]).run()
