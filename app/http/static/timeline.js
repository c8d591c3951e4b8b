// When each delta of an answer arrived: one tick per delta on a time axis that starts at Send, the first one
// marked as the time to first token. A smooth stream is an even comb; Lambda coalescing or a buffering proxy
// shows as clumps with gaps between them.
//
// SVG in a viewBox measured in milliseconds: a tick is drawn once at its arrival time and never moved; as
// the answer goes on, only the viewBox widens (non-scaling strokes keep ticks a pixel wide).

const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 24;
const MIN_SPAN_MS = 1000;

function svgElement(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function formatMs(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

export class Timeline {
  constructor(container) {
    this.figure = document.createElement("figure");
    this.figure.className = "timeline";
    this.svg = svgElement("svg", { preserveAspectRatio: "none", role: "img" });
    this.svg.append(svgElement("line", { class: "axis", x1: 0, x2: 1e9, y1: HEIGHT - 0.5, y2: HEIGHT - 0.5 }));
    this.ticks = svgElement("g", { class: "ticks" });
    this.svg.append(this.ticks);
    this.legend = document.createElement("figcaption");
    this.figure.append(this.svg, this.legend);
    container.append(this.figure);
    this.count = 0;
    this.first = null;
    this.last = 0;
    this.longestGap = 0;
    this.span = 0;
    this.widen(MIN_SPAN_MS);
    this.describe();
  }

  /** A delta arrived `ms` after Send (a tool call's piece is drawn apart). */
  mark(ms, kind = "text") {
    if (this.first === null) {
      this.first = ms;
      this.svg.append(svgElement("line", { class: "ttft", x1: ms, x2: ms, y1: 0, y2: HEIGHT }));
    } else {
      this.longestGap = Math.max(this.longestGap, ms - this.last);
    }
    this.last = ms;
    this.count += 1;
    this.ticks.append(svgElement("line", { class: `tick ${kind}`, x1: ms, x2: ms, y1: 6, y2: HEIGHT - 1 }));
    if (ms > this.span) this.widen(ms * 1.25);
  }

  widen(span) {
    this.span = span;
    this.svg.setAttribute("viewBox", `0 0 ${span} ${HEIGHT}`);
  }

  /** The legend under the chart; called at the end, and now and then while streaming. */
  describe() {
    let text;
    if (this.first === null) text = "No delta yet.";
    else {
      text =
        `${this.count} delta${this.count === 1 ? "" : "s"}: first after ${formatMs(this.first)} (time to ` +
        `first token, the first mark), last after ${formatMs(this.last)}; longest gap ${formatMs(this.longestGap)}.`;
    }
    this.legend.textContent = text;
    this.svg.setAttribute("aria-label", `Delta arrival timeline. ${text}`);
  }
}
