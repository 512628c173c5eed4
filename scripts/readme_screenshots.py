"""Rewrite the README's docs/images/{panel,training,gradients}.png: the quickstart and a 10-layer
sigmoid net in Voilà, headless Chromium at 1280 px, PNGs reduced to 256 colours (each < 200 KB).

    .venv/bin/python scripts/readme_screenshots.py [--out docs/images]

panel.png: the quickstart dashboard page mid-run ("zoom to data" on); training.png: its panel,
Training charts tab; gradients.png: the sigmoid net's Gradients tab after 30 epochs of digits.
(network.png and boundary.png come from tests/browser/test_network_views.py with
NNWIDGETS_UPDATE_SCREENSHOTS=1.) Uses the browser tests' server helpers (tests/browser/conftest.py).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

SIGMOID = [
    "%load_ext nnwidgets\nimport torch\nfrom torch import nn\nfrom nnwidgets.datasets import digits\n"
    "train_loader, val_loader, features, classes = digits(batch_size=64, seed=0)\n"
    "torch.manual_seed(0)\nsizes = [len(features)] + [32] * 10\nlayers = []\n"
    "for a, b in zip(sizes, sizes[1:]):\n    layers += [nn.Linear(a, b), nn.Sigmoid()]\n"
    "    nn.init.xavier_normal_(layers[-2].weight)\n",
    "%%train sigmoid_net train_loader --val val_loader --epochs 30 --lr 0.02 --momentum 0.9 --seed 0 --name run\n"
    "sigmoid_net = nn.Sequential(*layers, nn.Linear(32, len(classes)))",
    "_ = run.add_class('shot')",
]


def quickstart_cells() -> list[str]:
    nb = json.loads((ROOT / "demo_notebooks" / "01_quickstart.ipynb").read_text())
    cells = [("%%md\n" if c["cell_type"] == "markdown" else "") + "".join(c["source"]) for c in nb["cells"]]
    i = next(k for k, c in enumerate(cells) if c.startswith("%%train")) + 1
    return cells[:i] + ["_ = run.add_class('shot')"] + cells[i:]


def small_png(data: bytes, path: Path, crop_height: int | None = None) -> None:
    from PIL import Image
    im = Image.open(io.BytesIO(data)).convert("RGB")
    if crop_height:
        im = im.crop((0, 0, im.width, min(im.height, crop_height)))
    im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"{path}: {im.width}x{im.height}, {path.stat().st_size:,} bytes")


def shoot(cells: list[str], name: str, wait_s: float, act) -> None:
    from conftest import CHROMIUM_ARGS, run_voila, write_notebook_file
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory() as tmp:
        nb = write_notebook_file(Path(tmp) / f"{name}.ipynb", cells)
        with run_voila(nb, state_dir=Path(tmp) / "state") as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1800})
                page.goto(server.url(), wait_until="domcontentloaded", timeout=240_000)
                panel = page.locator(".shot").first
                panel.wait_for(state="visible", timeout=240_000)
                page.wait_for_timeout(wait_s * 1000)
                act(page, panel)
            finally:
                browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("NNWIDGETS_DEMO_EPOCHS", "3000")

    def quick(page, panel):
        panel.locator("button", has_text="zoom to data").first.click()
        page.wait_for_timeout(800)
        small_png(page.screenshot(full_page=True), out / "panel.png", crop_height=1580)
        small_png(panel.screenshot(), out / "training.png")

    def sigmoid(page, panel):
        panel.locator(".lm-TabBar-tab", has_text="Gradients").first.click()
        page.wait_for_timeout(1500)
        small_png(panel.screenshot(), out / "gradients.png")

    shoot(quickstart_cells(), "quickstart", 10, quick)
    shoot(SIGMOID, "sigmoid", 20, sigmoid)


if __name__ == "__main__":
    main()
