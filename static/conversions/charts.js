/* Small SVG charts for the control room: bars and a line, drawn from plain numbers.
   Titles and labels are set as text, never as markup. */
"use strict";

window.mcCharts = (function () {
  const NS = "http://www.w3.org/2000/svg";
  const PAD_LEFT = 44;
  const PAD_BOTTOM = 18;
  const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
  let W = 600;
  let H = 160;

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs || {})) {
      node.setAttribute(key, String(value));
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function frame(svg, topLabel, bottomLeft, bottomRight) {
    while (svg.firstChild) {
      svg.removeChild(svg.firstChild);
    }
    // Draw in the element's own pixels, so that text is never stretched.
    const box = svg.getBoundingClientRect();
    W = Math.max(Math.round(box.width), 120);
    H = Math.max(Math.round(box.height), 80);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.appendChild(el("line", { class: "mc-axis", x1: PAD_LEFT, y1: H - PAD_BOTTOM, x2: W, y2: H - PAD_BOTTOM }));
    svg.appendChild(el("line", { class: "mc-axis", x1: PAD_LEFT, y1: 0, x2: PAD_LEFT, y2: H - PAD_BOTTOM }));
    svg.appendChild(el("text", { x: PAD_LEFT - 4, y: 11, "text-anchor": "end" }, topLabel));
    svg.appendChild(el("text", { x: PAD_LEFT - 4, y: H - PAD_BOTTOM, "text-anchor": "end" }, "0"));
    if (bottomLeft) {
      svg.appendChild(el("text", { x: PAD_LEFT, y: H - 4 }, bottomLeft));
    }
    if (bottomRight) {
      svg.appendChild(el("text", { x: W, y: H - 4, "text-anchor": "end" }, bottomRight));
    }
  }

  function niceMax(values, fixedMax) {
    if (fixedMax) {
      return fixedMax;
    }
    const max = Math.max(0, ...values.map((v) => v || 0));
    return max > 0 ? max : 1;
  }

  function bars(svg, values, options) {
    const opts = options || {};
    const max = niceMax(values, opts.max);
    const format = opts.format || ((v) => compact.format(v));
    frame(svg, format(max), opts.firstLabel, opts.lastLabel);
    const plotH = H - PAD_BOTTOM - 2;
    const width = (W - PAD_LEFT) / Math.max(values.length, 1);
    values.forEach((value, i) => {
      const h = (plotH * (value || 0)) / max;
      const rect = el("rect", {
        class: "mc-bar",
        x: PAD_LEFT + i * width + 1,
        y: H - PAD_BOTTOM - h,
        width: Math.max(width - 2, 1),
        height: h,
      });
      rect.appendChild(el("title", {}, (opts.titles || [])[i] || format(value || 0)));
      svg.appendChild(rect);
    });
  }

  function line(svg, values, options) {
    const opts = options || {};
    const max = niceMax(values, opts.max);
    const format = opts.format || ((v) => String(v));
    frame(svg, format(max), opts.firstLabel, opts.lastLabel);
    const plotH = H - PAD_BOTTOM - 6;
    const step = values.length > 1 ? (W - PAD_LEFT - 8) / (values.length - 1) : 0;
    const points = [];
    values.forEach((value, i) => {
      if (value === null || value === undefined) {
        return;
      }
      const x = PAD_LEFT + 4 + i * step;
      const y = H - PAD_BOTTOM - (plotH * value) / max;
      points.push(`${x},${y}`);
      const dot = el("circle", { class: "mc-dot", cx: x, cy: y, r: 3 });
      dot.appendChild(el("title", {}, (opts.titles || [])[i] || format(value)));
      svg.appendChild(dot);
    });
    if (points.length > 1) {
      svg.insertBefore(el("polyline", { class: "mc-line", points: points.join(" ") }), svg.firstChild);
    }
  }

  return { bars, line };
})();
