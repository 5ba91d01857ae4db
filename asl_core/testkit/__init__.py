"""Helpers shared by the tests and the benches (one importable place; no ``sys.path`` edits):
a tiny trained checkpoint library, and a Streamlit server driven by headless Chromium
(``browser`` needs the ``dev`` extra: Playwright)."""
