// nnwidgets network diagram: plain browser ESM for anywidget (no imports, works offline).
//
// Traits (written by nnwidgets/widgets/network.py):
//   structure  JSON  {kind: "mlp"|"blocks", columns | blocks, edge_counts, stat_rows, total_edges, ...}
//   state      JSON  {grad_norm[], frozen[], dropout[], step, epoch, version}
//   weights    one binary buffer of float32: (src, dst, w) per sampled edge, then
//              (mean, std, min, max, bias) per stats row (see nnwidgets/_graph.py)
// Every user string (module names) goes in through textContent or an attribute, never parsed as HTML.

const SVG = "http://www.w3.org/2000/svg";
const POS = "#1f77b4", NEG = "#e6550d";            // weight sign: blue positive, orange negative
const TINT_LO = [241, 245, 249], TINT_HI = [129, 140, 248];
const FROZEN = "#90a4ae";
const GAP = 26, R = 8, PAD_X = 70, TOP = 44, LABEL_H = 92, WIDTH = 760;
const MAX_COL_H = 16 * GAP;  // a column of more than 16 neurons (up to max_neurons, 32) is drawn closer

function node(tag, attrs, parent, ns = SVG) {
  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}

function text(parent, str, attrs, tag = "text", ns = SVG) {
  const t = node(tag, attrs, parent, ns);
  t.textContent = str;
  return t;
}

function floats(buf) {
  if (!buf) return new Float32Array(0);
  if (buf instanceof ArrayBuffer) return new Float32Array(buf.slice(0, buf.byteLength - (buf.byteLength % 4)));
  if (ArrayBuffer.isView(buf)) {
    const n = buf.byteLength - (buf.byteLength % 4);
    return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + n));
  }
  return new Float32Array(0);
}

function fmt(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e4) ? v.toExponential(1) : v.toPrecision(3);
}

// Gradient norms → tint in [0, 1] on a log10 scale between the smallest and largest layer norm.
function tints(norms) {
  const logs = (norms || []).map((v) => (v > 0 && Number.isFinite(v) ? Math.log10(v) : null));
  const ok = logs.filter((v) => v !== null);
  const lo = Math.min(...ok), hi = Math.max(...ok);
  return {
    t: logs.map((v) => (v === null ? null : hi > lo ? (v - lo) / (hi - lo) : 1)),
    lo: ok.length ? 10 ** lo : null, hi: ok.length ? 10 ** hi : null,
  };
}

function tintColor(t) {
  if (t === null) return "rgb(250,250,250)";
  const c = TINT_LO.map((lo, i) => Math.round(lo + (TINT_HI[i] - lo) * t));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function legend(svg, tint, extra) {
  const g = node("g", { class: "nnw-legend" }, svg);
  const msg = tint.lo === null ? "layer tint: gradient norm (no sample yet)"
    : `layer tint: gradient norm, log scale, pale ${fmt(tint.lo)} … strong ${fmt(tint.hi)}`;
  text(g, msg, { x: 8, y: 16, "font-size": 11, fill: "currentColor" });
  text(g, extra, { x: 8, y: 31, "font-size": 11, fill: "currentColor", opacity: 0.75 });
}

// ---------------------------------------------------------------- MLP columns
function columnGeometry(structure) {
  const cols = structure.columns, maxN = structure.max_neurons || 16;
  // pitch and radius shrink together so the tallest drawn column fits MAX_COL_H (32 neurons: 13 px, r 4.5)
  const widest = Math.max(1, ...cols.filter((c) => !c.collapsed).map((c) => c.size));
  const gap = Math.min(GAP, MAX_COL_H / widest), r = Math.min(R, gap * 0.35);
  const stackH = Math.max(3, Math.round(Math.min(maxN, 16) * 0.75)) * GAP;
  const heights = cols.map((c) => (c.collapsed ? stackH : c.size * gap));
  const netH = Math.max(...heights, GAP);
  const span = cols.length > 1 ? (WIDTH - 2 * PAD_X) / (cols.length - 1) : 0;
  const geo = cols.map((c, i) => {
    const cx = PAD_X + i * span, h = heights[i], top = TOP + (netH - h) / 2;
    const y = (j) => (c.collapsed ? top + ((j + 0.5) / c.size) * h : top + gap / 2 + j * gap);
    return { cx, top, h, y, r };
  });
  return { geo, netH, height: TOP + netH + LABEL_H };
}

// Built once per structure; update() then changes attributes, titles, labels and edges in place
// (so a tooltip being read is not torn down at every update).
function buildMLP(root, structure) {
  const cols = structure.columns, { geo, netH, height } = columnGeometry(structure);
  const svg = node("svg", { viewBox: `0 0 ${WIDTH} ${height}`, width: "100%", class: "nnw-svg",
    style: `max-width:${WIDTH}px;font-family:sans-serif`, role: "img" }, root);
  const legendG = node("g", {}, svg);
  const back = node("g", { class: "nnw-backgrounds" }, svg);
  const edges = node("g", { class: "nnw-edges" }, svg);
  const front = node("g", { class: "nnw-columns" }, svg);
  const views = cols.map((c, i) => {
    const g = geo[i];
    const bg = node("rect", { class: "nnw-layer-bg", x: g.cx - 24, y: g.top - 10, width: 48, height: g.h + 20,
      rx: 10, "stroke-width": 2 }, back);
    const col = node("g", { class: "nnw-column", "data-name": c.name, "data-size": c.size,
      "data-collapsed": c.collapsed ? "true" : "false" }, front);
    const shapes = [], titles = [];
    if (c.collapsed) {
      const rect = node("rect", { class: "nnw-stack", x: g.cx - 11, y: g.top, width: 22, height: g.h, rx: 6,
        "stroke-width": 1.5 }, col);
      text(col, c.size.toLocaleString(), { x: g.cx, y: g.top + g.h / 2 + 4, "font-size": 11, "text-anchor": "middle",
        fill: "#263238", transform: `rotate(-90 ${g.cx} ${g.top + g.h / 2})`, "pointer-events": "none" });
      shapes.push(rect);
      titles.push(text(rect, "", {}, "title"));
    } else {
      for (let j = 0; j < c.size; j++) {
        const circle = node("circle", { class: "nnw-neuron", cx: g.cx, cy: g.y(j), r: g.r, "stroke-width": g.r < R ? 1 : 1.5 }, col);
        shapes.push(circle);
        titles.push(text(circle, "", {}, "title"));
      }
    }
    const labels = node("g", { class: "nnw-labels" }, col);
    return { bg, col, shapes, titles, labels };
  });
  return { structure, legendG, edges, views, geo, netH };
}

function updateMLP(view, state, buf) {
  const { structure, geo, netH } = view, cols = structure.columns;
  const tint = tints(state.grad_norm), frozenAt = (i) => !!(state.frozen || [])[i];
  view.legendG.replaceChildren();
  legend(view.legendG, tint, `step ${state.step ?? 0} · ${cols.map((c) => c.size).join(" → ")} · ` +
    `${(structure.params || 0).toLocaleString()} parameters`);

  // edges: pair k joins column k to column k + 1; weakest first so the strong ones stay on top
  view.edges.replaceChildren();
  let off = 0;
  (structure.edge_counts || []).forEach((n, k) => {
    const a = geo[k], b = geo[k + 1], frozen = frozenAt(k + 1);
    // a sampled pair (strongest edges only) has similar |w| everywhere: thinner, fainter lines
    const sampled = n < ((structure.total_edges || [])[k] || 0), wMax = sampled ? 1.4 : 3.6;
    const idx = [...Array(n).keys()].filter((i) => 3 * (off + i) + 2 < buf.length);
    const w = (i) => buf[3 * (off + i) + 2];
    let maxAbs = 0;
    for (const i of idx) maxAbs = Math.max(maxAbs, Math.abs(w(i)));
    idx.sort((i, j) => Math.abs(w(i)) - Math.abs(w(j)));
    for (const i of idx) {
      const s = maxAbs > 0 ? Math.abs(w(i)) / maxAbs : 0;
      node("line", { class: "nnw-edge", x1: a.cx + a.r, y1: a.y(buf[3 * (off + i)]), x2: b.cx - b.r,
        y2: b.y(buf[3 * (off + i) + 1]), stroke: w(i) >= 0 ? POS : NEG, "stroke-width": (0.4 + wMax * s).toFixed(2),
        "stroke-opacity": ((sampled ? 0.1 : 0.15) + (sampled ? 0.4 : 0.75) * s).toFixed(2),
        ...(frozen ? { "stroke-dasharray": "3 2" } : {}) }, view.edges);
    }
    off += n;
  });

  // stats rows follow the edges: 5 floats (mean, std, min, max, bias) per row
  let statOff = 3 * off;
  cols.forEach((c, i) => {
    const v = view.views[i], frozen = frozenAt(i);
    const rows = i === 0 ? 0 : (structure.stat_rows || [])[i - 1] || 0;
    const stat = (r) => (r < rows ? Array.from(buf.subarray(statOff + 5 * r, statOff + 5 * r + 5)) : []);
    v.col.setAttribute("data-frozen", frozen ? "true" : "false");
    v.bg.setAttribute("fill", tintColor(i === 0 ? null : tint.t[i] ?? null));
    v.bg.setAttribute("stroke", frozen ? FROZEN : "none");
    if (frozen) v.bg.setAttribute("stroke-dasharray", "6 4"); else v.bg.removeAttribute("stroke-dasharray");
    v.shapes.forEach((e) => {
      e.setAttribute("fill", frozen ? "#eceff1" : "#ffffff");
      e.setAttribute("stroke", frozen ? FROZEN : "#37474f");
    });
    if (c.collapsed) {
      const s = stat(0), shown = i > 0 ? (structure.edge_counts || [])[i - 1] : 0;
      const total = i > 0 ? (structure.total_edges || [])[i - 1] : 0;
      v.titles[0].textContent = `${c.name}: ${c.size} neurons (collapsed)` + (i === 0 ? "" :
        `\nincoming weights: mean ${fmt(s[0])}, std ${fmt(s[1])}, min ${fmt(s[2])}, max ${fmt(s[3])}; ` +
        `mean bias ${fmt(s[4])}\nshowing the ${shown} strongest of ${total.toLocaleString()} weights`);
    } else {
      v.titles.forEach((t, j) => {
        const s = stat(j);
        t.textContent = i === 0 ? `input feature ${j}` : `${c.name} · neuron ${j}\nincoming weights: ` +
          `mean ${fmt(s[0])}, std ${fmt(s[1])}, min ${fmt(s[2])}, max ${fmt(s[3])}\nbias ${fmt(s[4])}`;
      });
    }
    statOff += 5 * rows;
    const lines = [c.type === "input" ? "input" : c.name, c.type === "input" ? `${c.size} features` : c.type];
    if (c.activation) lines.push(c.activation);
    if (c.norm) lines.push(c.norm);
    const p = (state.dropout || [])[i];
    if (c.dropout) lines.push(`Dropout p=${p === null || p === undefined ? "?" : p.toFixed(2)}`);
    if (i > 0) lines.push(`‖∇‖ ${fmt((state.grad_norm || [])[i])}`);
    if (frozen) lines.push("frozen");
    v.labels.replaceChildren();
    lines.forEach((str, k) => text(v.labels, str, { class: k === 0 ? "nnw-label-name" : "nnw-label", x: geo[i].cx,
      y: TOP + netH + 22 + 13 * k, "font-size": k === 0 ? 12 : 11, "font-weight": k === 0 ? "bold" : "normal",
      "text-anchor": "middle", fill: str === "frozen" && k > 1 ? "#546e7a" : "currentColor" }));
  });
}

// ---------------------------------------------------------------- blocks
function buildBlocks(root, structure) {
  const legendSvg = node("svg", { viewBox: `0 0 ${WIDTH} 38`, width: "100%",
    style: `max-width:${WIDTH}px;font-family:sans-serif` }, root);
  const wrap = node("div", { class: "nnw-blocks",
    style: "display:flex;flex-wrap:wrap;gap:6px;align-items:stretch;font:12px sans-serif" }, root, null);
  const boxes = (structure.blocks || []).map((b) => {
    const box = node("div", { class: "nnw-block", "data-name": b.name,
      style: "padding:4px 8px;border-radius:6px;min-width:90px;color:#263238" }, wrap, null);
    text(box, b.name, { class: "nnw-block-name", style: "font-weight:bold" }, "div", null);
    text(box, b.type, { class: "nnw-block-type" }, "div", null);
    if (b.shape) text(box, `out N×${b.shape.join("×") || "1"}`, { class: "nnw-block-shape" }, "div", null);
    text(box, `${b.params.toLocaleString()} params`, {}, "div", null);
    return { box, live: node("div", { class: "nnw-block-live" }, box, null) };
  });
  if (structure.hidden) text(wrap, `+${structure.hidden} more modules`, { style: "align-self:center" }, "div", null);
  return { structure, legendSvg, boxes };
}

function updateBlocks(view, state) {
  const { structure } = view, tint = tints(state.grad_norm);
  view.legendSvg.replaceChildren();
  legend(view.legendSvg, tint, `step ${state.step ?? 0} · ${(structure.blocks || []).length} modules · ` +
    `${(structure.params || 0).toLocaleString()} parameters`);
  (structure.blocks || []).forEach((b, i) => {
    const { box, live } = view.boxes[i], frozen = !!(state.frozen || [])[i], g = (state.grad_norm || [])[i];
    const p = (state.dropout || [])[i];
    box.setAttribute("data-frozen", frozen ? "true" : "false");
    box.style.background = tintColor(tint.t[i] ?? null);
    box.style.border = frozen ? `2px dashed ${FROZEN}` : "1px solid #b0bec5";
    live.replaceChildren();
    if (b.params) text(live, `‖∇‖ ${fmt(g)}`, {}, "div", null);
    if (p !== null && p !== undefined) text(live, `p=${p.toFixed(2)}`, {}, "div", null);
    if (frozen) text(live, "frozen", {}, "div", null);
    box.title = `${b.name} (${b.type}): ${b.params.toLocaleString()} parameters` +
      (b.shape ? `, output N×${b.shape.join("×")}` : "") + (b.params ? `, gradient norm ${fmt(g)}` : "") +
      (frozen ? ", frozen" : "");
  });
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "nnw-network";
  root.style.color = "var(--jp-ui-font-color1, #222)";
  el.appendChild(root);
  let frame = 0, view = null;
  const draw = () => {
    frame = 0;
    const structure = model.get("structure") || {}, state = model.get("state") || {};
    if (!view || view.structure !== structure) {
      root.replaceChildren();
      root.dataset.kind = structure.kind || "";
      view = structure.kind === "mlp" ? buildMLP(root, structure)
        : structure.kind === "blocks" ? buildBlocks(root, structure) : { structure };
    }
    if (structure.kind === "mlp") updateMLP(view, state, floats(model.get("weights")));
    else if (structure.kind === "blocks") updateBlocks(view, state);
    root.dataset.version = String(state.version ?? 0);
    root.dataset.step = String(state.step ?? 0);
  };
  // one redraw per animation frame, however many traits changed together
  const schedule = () => { if (!frame) frame = requestAnimationFrame(draw); };
  const events = ["change:structure", "change:state", "change:weights"];
  events.forEach((ev) => model.on(ev, schedule));
  draw();
  return () => {
    events.forEach((ev) => model.off(ev, schedule));
    if (frame) cancelAnimationFrame(frame);
    root.remove();
  };
}

export default { render };
