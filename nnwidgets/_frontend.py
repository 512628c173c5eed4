"""Where a ``%%train`` cell runs, decided per cell from what the kernel was sent (never at import).

* ``"text"`` - no kernel at all: terminal IPython, ``ipython script.ipy``. No widget can be
  shown (``display(panel)`` printed ``TrainingPanel(children=...)``), so ``%%train`` trains in
  the foreground and prints one line per epoch.
* ``"batch"`` - a kernel driven by nbclient: ``jupyter nbconvert --execute``, ``jupyter
  execute``, papermill, Quarto, nbval/testbook. Nothing can steer, and the client shuts the
  kernel down after the last cell, killing a run left in the background; ``%%train`` waits
  for the run to end as with ``--wait``.
* ``"live"`` - anything else: JupyterLab, Notebook, VS Code, Voilà. Training runs in the
  background so the panel can steer it.

How batch execution is recognised. Jupyter gives a kernel no supported way to tell (the
maintainers' answer in jupyter/notebook#2587: "by design there isn't"; nbconvert#787 and #913
ask the same). The one difference found is the ``allow_stdin`` field of the
``execute_request``: nbclient sets ``kc.allow_stdin = False`` on its client (nbclient
``client.py``, ``async_start_new_kernel_client``), while JupyterLab, Notebook 7 and VS Code send
``allow_stdin: true`` (``@jupyterlab/services`` default; nbconvert#913 reports the same
observation). Voilà also executes through nbclient, but its pages are live; its kernels get
``VOILA_*`` variables (``VOILA_BASE_URL``, ``VOILA_PREHEAT``, ...) and ``SERVER_SOFTWARE=voila/...``
(``voila/handler.py``, ``voila_kernel_manager.py``), so those mean ``"live"``. The rule is
conservative: only an ``execute_request`` that says ``allow_stdin: false`` outside Voilà is
batch; a missing field, a widget callback or an unknown kernel is live. ``NNWIDGETS_WAIT=1`` /
``0`` overrides it either way.
"""
from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["TEXT", "BATCH", "LIVE", "front_end", "in_voila", "enable_colab_widgets", "COLAB_NOTICE"]

TEXT, BATCH, LIVE = "text", "batch", "live"
_VOILA_ENV = ("VOILA_BASE_URL", "VOILA_PREHEAT", "VOILA_APP_PORT", "VOILA_SERVER_URL", "VOILA_KERNEL_ID")


def in_voila() -> bool:
    """True in a kernel that Voilà started (its environment variables, see the module docstring)."""
    return any(k in os.environ for k in _VOILA_ENV) or os.environ.get("SERVER_SOFTWARE", "").startswith("voila")


def front_end(shell: Any) -> str:
    """``"text"``, ``"batch"`` or ``"live"`` for the cell ``shell`` runs now (see the module
    docstring); ``shell`` is ``get_ipython()`` (``None`` outside IPython)."""
    kernel = getattr(shell, "kernel", None)
    if shell is None or kernel is None:
        return TEXT
    if in_voila():
        return LIVE
    try:
        parent = kernel.get_parent()
    except Exception:  # noqa: BLE001 - an older or foreign kernel: assume someone can steer
        return LIVE
    if not isinstance(parent, dict) or (parent.get("header") or {}).get("msg_type") != "execute_request":
        return LIVE
    return BATCH if (parent.get("content") or {}).get("allow_stdin") is False else LIVE


COLAB_NOTICE = ("Colab: enabled its custom widget manager (google.colab.output.enable_custom_widget_manager()) "
                "so that ipywidgets 8, bqplot and anywidget views render")


def enable_colab_widgets() -> str | None:
    """In Colab (``google.colab`` imported), turn on its custom widget manager, without which
    Colab shows no third-party widget; returns :data:`COLAB_NOTICE`, or ``None`` elsewhere
    (and when Colab refused). Calling it again is harmless (Colab keeps it on)."""
    if "google.colab" not in sys.modules:
        return None
    try:
        from google.colab import output  # type: ignore[import-not-found]
        output.enable_custom_widget_manager()
    except Exception:  # noqa: BLE001 - an older Colab without it: nothing more can be done
        return None
    return COLAB_NOTICE
