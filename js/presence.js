// nnwidgets presence: while this view is on a page, tell the kernel so every `interval_ms`.
// No DOM, no imports. The kernel side (nnwidgets/widgets/presence.py) pauses a running
// Trainer when no view has pinged for a while (the page was closed or lost).

function render({ model, el }) {
  el.style.display = "none";
  const ping = () => model.send({ type: "ping" });
  ping();
  const timer = setInterval(ping, Math.max(250, model.get("interval_ms") || 5000));
  return () => clearInterval(timer);
}

export default { render };
