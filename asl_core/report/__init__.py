"""Reports: figures, tables and the self-contained HTML report, shared by the CLI and the app."""
