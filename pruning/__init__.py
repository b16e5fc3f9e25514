"""PruneScope's pruning backend: load a model, score and mask its weights, evaluate the result.

Nothing here imports Streamlit; the app, the CLI (``python -m pruning``) and the
tests all go through the same functions and the one method registry.
"""

__version__ = "0.1.0"
