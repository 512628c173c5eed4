"""The live TrainingPanel of ``%%train`` in Notebook 7 (Run All from the menu), driven by real
browser input: the scenario of ``_panel_scenario.exercise_live_panel``."""
import _kernel_probe as kp
from _panel_scenario import exercise_live_panel


def test_notebook7_panel_start_lr_drag_stop_and_escaped_names(page, write_notebook, notebook_dir,
                                                               notebook_server, jupyter_ui):
    write_notebook("panel", kp.panel_notebook(kp.XSS_NAME))
    server = notebook_server(notebook_dir)
    jupyter_ui.open(server, "panel.ipynb")
    jupyter_ui.run_all(via="menu")
    jupyter_ui.wait_idle()
    assert jupyter_ui.errors() == []
    exercise_live_panel(page, notebook_dir)
    assert jupyter_ui.errors() == []
