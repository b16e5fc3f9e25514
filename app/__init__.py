"""PruneScope's Streamlit front-end: shared UI code (sidebar, cached resources, chart builders)."""
