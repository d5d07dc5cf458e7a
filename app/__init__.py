"""The SegTune dashboard (Streamlit): pages render, core/ does the work."""
