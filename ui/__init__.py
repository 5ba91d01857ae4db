"""Thin Streamlit helpers for the ASL Lens app: settings, session-state keys, cached
loaders, widgets that return config objects. The computing lives in ``asl_core``."""
