// The whole taxonomy as a clickable radial wheel (inline SVG): core feelings in the inner
// ring, secondary around them, tertiary outside. Each core feeling gets an angle in
// proportion to its number of outermost feelings, so every segment of the outer ring has the
// same width. Clicking a segment dispatches a "pick" event (detail: the node's key); the picker
// list offers the same choices to the keyboard and to screen readers, so the drawing itself
// stays out of the tab order.

import { pathOf } from "./taxonomy.js";

const SVG = "http://www.w3.org/2000/svg";
const SIZE = 400;
const C = SIZE / 2;
const RINGS = [
  [28, 90], // core
  [90, 138], // secondary
  [138, 198], // tertiary
];

function el(name, attrs = {}, text = "") {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function polar(radius, angle) {
  // 0 rad points up, angles grow clockwise.
  return [C + radius * Math.sin(angle), C - radius * Math.cos(angle)];
}

function arcPath(r0, r1, a0, a1) {
  const large = a1 - a0 > Math.PI ? 1 : 0;
  const [x0, y0] = polar(r1, a0);
  const [x1, y1] = polar(r1, a1);
  const [x2, y2] = polar(r0, a1);
  const [x3, y3] = polar(r0, a0);
  const f = (n) => n.toFixed(2);
  return (
    `M${f(x0)} ${f(y0)} A${r1} ${r1} 0 ${large} 1 ${f(x1)} ${f(y1)} ` +
    `L${f(x2)} ${f(y2)} A${r0} ${r0} 0 ${large} 0 ${f(x3)} ${f(y3)}Z`
  );
}

function leafCount(node) {
  if (!node.children.length) return 1;
  return node.children.reduce((sum, child) => sum + leafCount(child), 0);
}

/** Text colour that stays readable on a segment's fill. */
function inkFor(hex) {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex || "");
  if (!m) return "#1d2430";
  const n = parseInt(m[1], 16);
  const [r, g, b] = [(n >> 16) & 255, (n >> 8) & 255, n & 255].map((v) => {
    const s = v / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return luminance > 0.4 ? "#1d2430" : "#ffffff";
}

export class Wheel extends EventTarget {
  constructor(container, tree) {
    super();
    this.tree = tree;
    this.segments = new Map(); // node key -> <g>
    this.svg = el("svg", {
      viewBox: `0 0 ${SIZE} ${SIZE}`,
      class: "wheel-svg",
      "aria-hidden": "true",
      focusable: "false",
    });
    const total = tree.roots.reduce((sum, root) => sum + leafCount(root), 0) || 1;
    let angle = 0;
    for (const root of tree.roots) {
      const span = (2 * Math.PI * leafCount(root)) / total;
      this.drawNode(root, angle, angle + span);
      angle += span;
    }
    this.centre = el("g", { class: "wheel-centre" });
    this.centre.append(el("circle", { cx: C, cy: C, r: RINGS[0][0] - 2 }));
    this.centreText = el("text", { x: C, y: C, "dominant-baseline": "central" });
    this.centre.append(this.centreText);
    this.svg.append(this.centre);
    this.svg.addEventListener("click", (event) => {
      const target = event.target.closest("[data-key]");
      if (target) this.dispatchEvent(new CustomEvent("pick", { detail: target.dataset.key }));
    });
    container.replaceChildren(this.svg);
  }

  drawNode(node, a0, a1) {
    const level = Math.min(node.level, RINGS.length - 1);
    // A childless node of an inner ring fills the rings outside it too.
    const [r0] = RINGS[level];
    const r1 = node.children.length ? RINGS[level][1] : RINGS[RINGS.length - 1][1];
    const names = pathOf(node).map((n) => n.name);
    const g = el("g", { class: `seg level-${level}`, "data-key": node.key });
    const path = el("path", { d: arcPath(r0, r1, a0, a1), fill: node.colour || "#cbd5e1" });
    g.append(path);
    g.append(el("title", {}, names.join(" › ")));
    this.drawLabel(g, node, r0, r1, a0, a1);
    this.svg.append(g);
    this.segments.set(node.key, g);
    if (node.children.length) {
      const total = leafCount(node);
      let angle = a0;
      for (const child of node.children) {
        const span = ((a1 - a0) * leafCount(child)) / total;
        this.drawNode(child, angle, angle + span);
        angle += span;
      }
    }
  }

  drawLabel(g, node, r0, r1, a0, a1) {
    const mid = (a0 + a1) / 2;
    const ink = inkFor(node.colour);
    const radial = node.level > 0 || a1 - a0 < 0.5;
    const radius = (r0 + r1) / 2;
    const [x, y] = polar(radius, mid);
    let rotation = (mid * 180) / Math.PI;
    if (radial) {
      // Read along the radius, never upside down.
      rotation -= 90;
      if (mid > Math.PI) rotation += 180;
    } else if (mid > Math.PI / 2 && mid < (3 * Math.PI) / 2) {
      rotation += 180;
    }
    const arc = (a1 - a0) * radius;
    const fontSize = [12.5, 9.5, 9][node.level] ?? 9;
    const room = radial ? r1 - r0 - 6 : arc - 6;
    let label = node.name;
    // Trim to the room available (about half an em per character in a sans-serif).
    const fits = Math.floor(room / (fontSize * 0.52));
    if (label.length > fits) label = fits > 3 ? `${label.slice(0, fits - 1)}…` : "";
    if (!label || (radial && arc < fontSize * 0.9)) return;
    g.append(
      el(
        "text",
        {
          x: x.toFixed(1),
          y: y.toFixed(1),
          transform: `rotate(${rotation.toFixed(1)} ${x.toFixed(1)} ${y.toFixed(1)})`,
          "dominant-baseline": "central",
          "text-anchor": "middle",
          fill: ink,
          "font-size": fontSize,
        },
        label,
      ),
    );
  }

  /** Show the selection: its path highlighted, the ring the digits act on emphasised. */
  update(selected, ring) {
    const onPath = new Set(selected ? pathOf(selected).map((n) => n.key) : []);
    const inRing = new Set(ring.map((n) => n.key));
    const focusing = onPath.size > 0;
    for (const [key, g] of this.segments) {
      g.classList.toggle("on-path", onPath.has(key));
      g.classList.toggle("selected", Boolean(selected) && key === selected.key);
      g.classList.toggle("in-ring", inRing.has(key));
      g.classList.toggle("dimmed", focusing && !onPath.has(key) && !inRing.has(key));
    }
    this.centreText.textContent = selected ? selected.name : "";
  }
}
