"""The live TrainingPanel of ``%%train`` in JupyterLab (Run All), driven by real browser input.

Same scenario as the Voila test (see ``_panel_scenario.exercise_live_panel``): Start, loss lines
growing, a mouse drag on the learning-rate slider reaching ``optimizer.param_groups`` of the
running trainer within one step (read kernel-side), Stop, and a layer name full of markup shown
as text.
"""
import _kernel_probe as kp
from _panel_scenario import exercise_live_panel


def test_lab_panel_start_lr_drag_stop_and_escaped_names(page, write_notebook, notebook_dir, lab_server,
                                                         jupyter_ui):
    write_notebook("panel", kp.panel_notebook(kp.XSS_NAME))
    server = lab_server(notebook_dir)
    jupyter_ui.open(server, "panel.ipynb")
    jupyter_ui.run_all()
    jupyter_ui.wait_idle()
    assert jupyter_ui.errors() == []
    last = exercise_live_panel(page, notebook_dir)
    assert last["tabs"][:3] == ["Training charts", "Gradients", "Parameters"]
    assert jupyter_ui.errors() == []
