// The valence/arousal pad: one point in [-1, 1]², set by clicking or with the arrow keys
// while the pad has focus (Shift for bigger steps, Delete to clear).

const STEP = 0.1;
const BIG_STEP = 0.25;

const round = (v) => Math.round(v * 100) / 100;
const clamp = (v) => Math.min(1, Math.max(-1, v));

export function describeAffect(point) {
  if (!point) return "not set";
  const v = point.valence;
  const a = point.arousal;
  const valence = v > 0.2 ? "pleasant" : v < -0.2 ? "unpleasant" : "neutral";
  const arousal = a > 0.2 ? "aroused" : a < -0.2 ? "calm" : "moderate arousal";
  return `${valence}, ${arousal} (valence ${v.toFixed(2)}, arousal ${a.toFixed(2)})`;
}

export class AffectPad extends EventTarget {
  constructor(element) {
    super();
    this.element = element;
    this.area = element.querySelector(".pad-area");
    this.dot = element.querySelector(".pad-dot");
    this.readout = element.querySelector(".pad-readout");
    this.point = null;
    this.area.addEventListener("pointerdown", (event) => {
      const box = this.area.getBoundingClientRect();
      this.set({
        valence: ((event.clientX - box.left) / box.width) * 2 - 1,
        arousal: 1 - ((event.clientY - box.top) / box.height) * 2,
      });
      this.area.focus();
      event.preventDefault();
    });
    this.area.addEventListener("keydown", (event) => this.onKey(event));
    this.render();
  }

  onKey(event) {
    const step = event.shiftKey ? BIG_STEP : STEP;
    const moves = {
      ArrowLeft: [-step, 0],
      ArrowRight: [step, 0],
      ArrowUp: [0, step],
      ArrowDown: [0, -step],
    };
    if (event.key in moves) {
      const [dv, da] = moves[event.key];
      const from = this.point ?? { valence: 0, arousal: 0 };
      // The first arrow press places the point at the centre, then moves it.
      this.set(this.point ? { valence: from.valence + dv, arousal: from.arousal + da } : from);
      event.preventDefault();
      event.stopPropagation();
    } else if (event.key === "Delete") {
      this.set(null);
      event.preventDefault();
      event.stopPropagation();
    }
  }

  set(point) {
    this.point = point
      ? { valence: round(clamp(point.valence)), arousal: round(clamp(point.arousal)) }
      : null;
    this.render();
    this.dispatchEvent(new Event("change"));
  }

  render() {
    const p = this.point;
    this.dot.hidden = !p;
    if (p) {
      this.dot.style.left = `${((p.valence + 1) / 2) * 100}%`;
      this.dot.style.top = `${((1 - p.arousal) / 2) * 100}%`;
    }
    const text = describeAffect(p);
    this.area.setAttribute("aria-valuetext", text);
    this.readout.textContent = p ? `V ${p.valence.toFixed(2)} · A ${p.arousal.toFixed(2)}` : "Not set";
  }
}
