"""The live TrainingPanel of ``%%train`` in a Voila dashboard, driven by real browser input.

The notebook (see ``_kernel_probe``) trains a small MLP on seeded synthetic data; a probe thread
in the kernel writes the trainer's state, step and ``optimizer.param_groups[*]["lr"]`` to a file
the test reads, so effects of clicks and drags are checked where they matter: in the running
loop. The screenshot taken mid-training goes to ``test-artifacts/panel.png`` only: the README's
``docs/images/panel.png`` is the quickstart dashboard, from ``scripts/readme_screenshots.py``.
"""
import _kernel_probe as kp
from _panel_scenario import exercise_live_panel


def test_voila_panel_start_lr_drag_stop_and_escaped_names(page, write_notebook, voila_server, artifacts_dir):
    nb = write_notebook("panel", kp.panel_notebook(kp.XSS_NAME))
    server = voila_server(nb)
    kp.open_voila(page, server)
    shots = kp.screenshot_paths(artifacts_dir, "panel.png", readme=False)
    last = exercise_live_panel(page, nb.parent, screenshots=shots)
    assert last["tabs"][:3] == ["Training charts", "Gradients", "Parameters"]
    assert all(p.stat().st_size > 20_000 for p in shots)
