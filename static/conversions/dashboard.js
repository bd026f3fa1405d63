/* The control room dashboard: draws the daily charts and refreshes the queue health
   every few seconds from dashboard/data.json. Values are set with textContent. */
"use strict";

(function () {
  const root = document.getElementById("mc-dashboard");
  if (!root) {
    return;
  }
  const url = root.dataset.dataUrl;
  const pollMs = Number(root.dataset.pollMs) || 5000;

  function byId(id) {
    return document.getElementById(id);
  }

  function drawCharts(data) {
    if (!window.mcCharts) {
      return;
    }
    const days = data.daily.map((d) => d.day);
    const first = days[0] || "";
    const last = days[days.length - 1] || "";
    const rate = byId("mc-chart-success");
    if (rate) {
      window.mcCharts.line(rate, data.daily.map((d) => d.success_rate), {
        max: 1,
        format: (v) => `${Math.round(v * 100)}%`,
        titles: data.daily.map((d) => `${d.day}: ${d.success_rate === null ? "–" : (100 * d.success_rate).toFixed(1) + "%"}`),
        firstLabel: first,
        lastLabel: last,
      });
    }
    const cost = byId("mc-chart-cost");
    if (cost) {
      window.mcCharts.bars(cost, data.daily.map((d) => d.cost_usd), {
        format: (v) => `$${Number(v).toFixed(2)}`,
        titles: data.daily.map((d) => `${d.day}: $${Number(d.cost_usd).toFixed(4)}`),
        firstLabel: first,
        lastLabel: last,
      });
    }
  }

  function renderQueue(queue) {
    const warning = byId("mc-queue-warning");
    if (warning) {
      warning.textContent = queue.warning;
      warning.hidden = !queue.warning;
    }
    const alive = byId("mc-cluster-alive");
    if (alive) {
      alive.textContent = queue.cluster_alive ? alive.dataset.yes : alive.dataset.no;
    }
    const age = byId("mc-oldest-age");
    if (age) {
      age.textContent = queue.oldest_queued_age_s === null ? "–" : `${Math.round(queue.oldest_queued_age_s)} s`;
    }
    const active = byId("mc-active-jobs");
    if (active) {
      active.textContent = String(queue.active_jobs);
    }
  }

  async function poll() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) {
        const data = await response.json();
        renderQueue(data.queue);
        drawCharts(data);
      }
    } catch (error) {
      // keep what is shown; try again on the next tick
    }
    window.setTimeout(poll, pollMs);
  }

  const initial = JSON.parse(byId("mc-dashboard-data").textContent);
  renderQueue(initial.queue);
  drawCharts(initial);
  window.setTimeout(poll, pollMs);
})();
