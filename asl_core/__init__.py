"""ASL Lens core library: data, models, losses, training, checkpoints and analysis.

This package never imports streamlit; the app is a thin layer on top of it.
"""

__version__ = "0.1.0"
