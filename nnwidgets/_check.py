"""``nw.check()`` / ``%nnwidgets check``: which front-end pieces this environment has, and the
one command that installs what is missing.

What a panel needs, and where each piece lives:

* **ipywidgets 8** in the kernel (the widget models), with its front-end halves:
  ``jupyterlab_widgets`` (JupyterLab 4, Notebook 7, VS Code's own widget manager reads the
  kernel's version) and ``widgetsnbextension`` (classic Notebook, Voilà 0.5).
* **bqplot** (the charts) and **anywidget** (the Network view, the page-presence ping): Python
  packages in the kernel; their JavaScript comes with the package as a JupyterLab extension
  (``share/jupyter/labextensions/bqplot``, ``.../anywidget``) that the *server* loads. The
  check looks in this environment's Jupyter data paths; a server started from another
  environment needs them there instead.
* **ipykernel** ``>= 6.29, != 7.0.0`` (7.0.0 dropped widget updates sent from a thread).
* **Voilà** only for dashboards (optional).

Where the code runs, as far as a kernel can tell (never decided at import):
Colab (``google.colab`` imported), VS Code (``VSCODE_PID`` in the kernel's environment, set by
VS Code for the processes it starts), Voilà (its ``VOILA_*`` variables), a Jupyter server
(``JPY_SESSION_NAME`` / ``JPY_PARENT_PID``: JupyterLab and Notebook 7 cannot be told apart
from the kernel), another kernel, terminal IPython, or plain Python.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
import sys
from typing import Any

__all__ = ["Piece", "FrontEndCheck", "check", "detect_front_end", "FIX_PIP"]

FIX_PIP = {"ipywidgets": '"ipywidgets>=8.1,<9"', "jupyterlab_widgets": "jupyterlab_widgets",
           "widgetsnbextension": "widgetsnbextension", "bqplot": "bqplot", "anywidget": "anywidget",
           "ipykernel": '"ipykernel>=6.29,!=7.0.0"'}
"""What ``pip install`` needs for each required piece that is missing or unsuitable."""


@dataclasses.dataclass(frozen=True)
class Piece:
    """One front-end piece.

    Attributes:
        name: distribution name (``"bqplot"``) or ``"<name> lab extension"``.
        version: installed version, or ``None`` when not found.
        ok: present and suitable.
        required: the panel needs it (Voilà does not).
        note: what it is for, or what is wrong.
    """

    name: str
    version: str | None
    ok: bool
    required: bool
    note: str


@dataclasses.dataclass(frozen=True)
class FrontEndCheck:
    """Result of :func:`check`. ``print(result)`` (or its repr) shows a table.

    Attributes:
        front_end: where this runs, as far as detectable (see the module docstring).
        pieces: every :class:`Piece`, in the order shown.
        fix: the one command that installs what is missing (``None`` when nothing is).
        notes: advice for this front end.
    """

    front_end: str
    pieces: tuple[Piece, ...]
    fix: str | None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Every required piece is present and suitable."""
        return all(p.ok for p in self.pieces if p.required)

    @property
    def missing(self) -> list[str]:
        """Names of the required pieces that are missing or unsuitable."""
        return [p.name for p in self.pieces if p.required and not p.ok]

    def __str__(self) -> str:
        w = max(len(p.name) for p in self.pieces)
        lines = [f"nnwidgets front-end check: {self.front_end}"]
        for p in self.pieces:
            mark = "ok" if p.ok else ("MISSING" if p.version is None else "PROBLEM") if p.required else "-"
            lines.append(f"  {p.name:<{w}}  {p.version or 'not found':<12} {mark:<8} {p.note}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"fix: {self.fix}" if self.fix else "nothing to fix")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def _version(dist: str, module: str) -> str | None:
    """Version of ``dist`` when its module ``module`` can be imported here, else ``None``
    (looked up without importing it: ``importlib.util.find_spec``, then the metadata)."""
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except (ImportError, ValueError):
        return None
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return getattr(sys.modules.get(module), "__version__", "?")


def _lab_extension(path: str) -> str | None:
    """The folder holding the JupyterLab extension ``path`` in this environment's Jupyter data
    paths (``jupyter --paths``), or ``None``."""
    try:
        from jupyter_core.paths import jupyter_path
        roots = jupyter_path("labextensions")
    except ImportError:
        roots = [os.path.join(sys.prefix, "share", "jupyter", "labextensions")]
    for root in roots:
        if os.path.isfile(os.path.join(root, path, "package.json")):
            return os.path.join(root, path)
    return None


def _major_minor(version: str) -> tuple[int, int]:
    parts = (version.split(".") + ["0", "0"])[:2]
    return tuple(int("".join(c for c in x if c.isdigit()) or 0) for x in parts)  # type: ignore[return-value]


def detect_front_end(shell: Any = None) -> str:
    """Where this runs: ``"Colab"``, ``"VS Code"``, ``"Voilà"``, ``"Jupyter server (JupyterLab or
    Notebook)"``, ``"kernel (front end unknown)"``, ``"terminal IPython"`` or ``"plain Python"``.

    Args:
        shell: the IPython shell (default ``get_ipython()``); ``None`` outside IPython.
    """
    from ._frontend import in_voila
    if shell is None:
        try:
            from IPython import get_ipython
            shell = get_ipython()
        except ImportError:
            shell = None
    if "google.colab" in sys.modules:
        return "Colab"
    if shell is None:
        return "plain Python"
    if getattr(shell, "kernel", None) is None:
        return "terminal IPython"
    if in_voila():
        return "Voilà"
    if "VSCODE_PID" in os.environ:
        return "VS Code"
    if "JPY_SESSION_NAME" in os.environ or "JPY_PARENT_PID" in os.environ:
        return "Jupyter server (JupyterLab or Notebook)"
    return "kernel (front end unknown)"


def _pieces() -> list[Piece]:
    out = []
    v = _version("ipywidgets", "ipywidgets")
    out.append(Piece("ipywidgets", v, v is not None and _major_minor(v) >= (8, 1) and _major_minor(v)[0] < 9,
                     True, "widget models (8.1 <= version < 9)" if v is None or _major_minor(v)[0] == 8
                     else f"version {v}: nnwidgets needs ipywidgets 8"))
    for dist, note in (("jupyterlab_widgets", "widgets in JupyterLab 4 / Notebook 7"),
                       ("widgetsnbextension", "widgets in classic Notebook / Voilà")):
        v = _version(dist, dist)
        out.append(Piece(dist, v, v is not None, True, note))
    for dist, note in (("bqplot", "charts"), ("anywidget", "Network view")):
        v = _version(dist, dist)
        out.append(Piece(dist, v, v is not None, True, note))
        where = _lab_extension(dist)
        out.append(Piece(f"{dist} lab extension", v if where else None, where is not None, False,
                         f"in {where}" if where else "not in this environment's Jupyter paths (needed "
                         "where the Jupyter server runs)"))
    v = _version("ipykernel", "ipykernel")
    bad = v is not None and (v == "7.0.0" or _major_minor(v) < (6, 29))
    out.append(Piece("ipykernel", v, v is not None and not bad, True,
                     f"version {v} is not supported (needs >= 6.29, != 7.0.0)" if bad else "the kernel"))
    v = _version("voila", "voila")
    out.append(Piece("voila", v, v is not None, False, "dashboards (optional)"))
    return out


_NOTES = {
    "Colab": "Colab shows ipywidgets 8 / bqplot / anywidget through its custom widget manager; nnwidgets "
             "enables it (google.colab.output.enable_custom_widget_manager()) when loaded and when a panel is shown.",
    "VS Code": "VS Code needs its Jupyter extension; it renders ipywidgets 8 and loads bqplot's and anywidget's "
               "JavaScript from this environment's share/jupyter/nbextensions, or from a CDN if allowed "
               "(setting jupyter.widgetScriptSources).",
    "terminal IPython": "no widgets here: %%train trains in the foreground and prints one line per epoch.",
    "plain Python": "no widgets here: use Trainer.fit(), or a notebook for the panel.",
}


def check(shell: Any = None) -> FrontEndCheck:
    """Which front-end pieces are present, where this runs, and the command that fixes what is missing.

    Args:
        shell: the IPython shell (default ``get_ipython()``).

    Returns:
        A :class:`FrontEndCheck`; ``print()`` it for a table, ``.ok`` / ``.missing`` / ``.fix``
        for the facts.

    Example:
        >>> import nnwidgets as nw
        >>> nw.check()          # doctest: +SKIP
        nnwidgets front-end check: Jupyter server (JupyterLab or Notebook)
          ipywidgets   8.1.9  ok  widget models (8.1 <= version < 9)
        ...
        nothing to fix
    """
    front = detect_front_end(shell)
    pieces = tuple(_pieces())
    need = [FIX_PIP[p.name] for p in pieces if p.required and not p.ok and p.name in FIX_PIP]
    fix = None
    if need:
        fix = "pip install -U " + " ".join(need)
        if front not in ("terminal IPython", "plain Python"):
            fix = f"%{fix}   (in a notebook cell; then restart the kernel and reload the page)"
    notes = tuple(n for n in [_NOTES.get(front)] if n)
    return FrontEndCheck(front, pieces, fix, notes)
