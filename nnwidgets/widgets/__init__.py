"""Jupyter views of a Trainer (ipywidgets, bqplot, anywidget): the only UI package."""

__all__: list[str] = []
