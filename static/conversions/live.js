/* The live job page: polls the job's stats.json every two seconds and redraws the
   numbers, the progress bar and the throughput chart without reloading the page.
   Every value from the server is set with textContent. */
"use strict";

(function () {
  const root = document.getElementById("mc-job");
  if (!root) {
    return;
  }
  const url = root.dataset.statsUrl;
  const pollMs = Number(root.dataset.pollMs) || 2000;
  const SERIES_EVERY = 5; // polls; the chart changes slowly and costs the most to compute
  let polls = 0;
  const dash = "–";
  const perMinute = root.dataset.perMinute || "/min";

  function byId(id) {
    return document.getElementById(id);
  }

  function setText(id, value) {
    const node = byId(id);
    if (node) {
      node.textContent = value === null || value === undefined || value === "" ? dash : String(value);
    }
  }

  function number(value) {
    return value === null || value === undefined ? dash : Number(value).toLocaleString();
  }

  function money(value) {
    return value === null || value === undefined ? dash : `$${Number(value).toFixed(4)}`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) {
      return dash;
    }
    const s = Math.round(seconds);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const rest = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
  }

  function cell(row, text, href) {
    const td = document.createElement("td");
    if (href) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      td.appendChild(a);
    } else {
      td.textContent = text;
    }
    row.appendChild(td);
    return td;
  }

  function renderCounts(stats) {
    const body = byId("mc-counts-body");
    if (!body) {
      return;
    }
    const rows = Object.entries(stats.counts).map(([status, count]) => {
      const tr = document.createElement("tr");
      cell(tr, stats.count_labels[status] || status);
      cell(tr, number(count));
      return tr;
    });
    body.replaceChildren(...rows);
  }

  function renderFailures(stats) {
    const body = byId("mc-failures-body");
    const empty = byId("mc-failures-empty");
    if (!body) {
      return;
    }
    const rows = Object.values(stats.failures).map((failure) => {
      const tr = document.createElement("tr");
      cell(tr, failure.label, failure.url);
      cell(tr, number(failure.count));
      const td = cell(tr, "");
      const list = document.createElement("ul");
      list.className = "mc-samples";
      for (const sample of failure.samples) {
        const li = document.createElement("li");
        li.textContent = sample;
        list.appendChild(li);
      }
      td.appendChild(list);
      return tr;
    });
    body.replaceChildren(...rows);
    if (empty) {
      empty.hidden = rows.length > 0;
    }
  }

  function renderBatchApi(stats) {
    const batch = stats.batch_api;
    const body = byId("mc-remote-batches-body");
    if (!batch || !body) {
      return;
    }
    const dollars = (value) => (value === null || value === undefined ? dash : `$${Number(value).toFixed(6)}`);
    setText("mc-batch-realtime", dollars(batch.realtime_cost_usd));
    setText("mc-batch-saved", dollars(batch.saved_vs_realtime_usd));
    const followUp = body.dataset.followUp || "follow-up";
    const rows = batch.batches.map((row) => {
      const tr = document.createElement("tr");
      cell(tr, row.follow_up ? `${row.seq} (${followUp})` : String(row.seq));
      cell(tr, row.remote_id || dash);
      cell(tr, row.state_label);
      cell(tr, number(row.requests));
      cell(tr, number(row.completed));
      cell(tr, number(row.failed));
      cell(tr, row.submitted || dash);
      cell(tr, row.ended || dash);
      return tr;
    });
    body.replaceChildren(...rows);
  }

  function renderChart(series) {
    const svg = byId("mc-throughput");
    if (!svg || !window.mcCharts) {
      return;
    }
    // The server's time zone (settings.TIME_ZONE, Asia/Seoul), as on every other page,
    // not the browser's.
    const timeZone = document.querySelector('meta[name="mc-time-zone"]')?.content || undefined;
    const time = (iso) => new Date(iso).toLocaleTimeString(undefined, { timeZone });
    window.mcCharts.bars(
      svg,
      series.map((point) => point.per_min),
      {
        titles: series.map((point) => `${time(point.start)}: ${point.per_min}${perMinute}`),
        firstLabel: series.length ? time(series[0].start) : "",
        lastLabel: series.length ? time(series[series.length - 1].start) : "",
      },
    );
  }

  function renderButtons(stats) {
    const retryable = (stats.counts.failed || 0) + (stats.counts.cancelled || 0);
    for (const node of root.querySelectorAll("[data-when]")) {
      const when = node.dataset.when.split(" ");
      node.hidden = !(when.includes(stats.status) || (when.includes("retryable") && retryable > 0));
    }
  }

  function render(data) {
    const stats = data.stats;
    const bar = byId("mc-progress");
    if (bar) {
      bar.max = stats.total || 1;
      bar.value = stats.done;
    }
    root.dataset.status = stats.status;
    setText("mc-percent", `${Math.floor(100 * stats.progress)}%`);
    setText("mc-done", number(stats.done));
    setText("mc-total", number(stats.total));
    setText("mc-status", stats.status_label);
    setText("mc-success", stats.success.text);
    setText("mc-throughput-now", stats.throughput_per_min === null ? dash : `${stats.throughput_per_min}${perMinute}`);
    setText("mc-p50", stats.latency_ms.p50 === null ? dash : `${stats.latency_ms.p50} ms`);
    setText("mc-p95", stats.latency_ms.p95 === null ? dash : `${stats.latency_ms.p95} ms`);
    setText("mc-eta", duration(stats.eta_s));
    setText("mc-elapsed", duration(stats.elapsed_s));
    setText("mc-tokens-in", number(stats.tokens_in));
    setText("mc-tokens-out", number(stats.tokens_out));
    setText("mc-cost", money(stats.cost_usd));
    setText("mc-prompt-cached", number(stats.prompt_cache.tokens_cached));
    setText("mc-prompt-share", stats.prompt_cache.share_text);
    setText("mc-prompt-saved", money(stats.prompt_cache.saved_usd));
    setText("mc-cache-hits", number(stats.cache.hits));
    setText("mc-cache-saved", money(stats.cache.saved_usd));
    setText("mc-api-calls", number(stats.api_calls));
    setText("mc-requests-sent", number(stats.requests_sent));
    setText("mc-requests-unrecorded", number(stats.requests_unrecorded));
    setText("mc-error", stats.error);
    byId("mc-error").hidden = !stats.error;
    renderCounts(stats);
    renderFailures(stats);
    renderBatchApi(stats);
    if (data.series) {
      renderChart(data.series);
    }
    renderButtons(stats);
  }

  async function poll() {
    try {
      polls += 1;
      const withSeries = polls % SERIES_EVERY === 0;
      const response = await fetch(withSeries ? url : `${url}?series=0`, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (response.ok) {
        const data = await response.json();
        render(data);
        if (data.final) {
          return; // a finished job does not change until someone retries it
        }
      }
    } catch (error) {
      // A network blip or an expired session: keep the last numbers and try again.
    }
    window.setTimeout(poll, pollMs);
  }

  // Cancel asks first; without JavaScript the server shows a confirmation page instead.
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
        return;
      }
      const agreed = document.createElement("input");
      agreed.type = "hidden";
      agreed.name = "confirm";
      agreed.value = "1";
      form.appendChild(agreed);
    });
  });

  const initial = JSON.parse(byId("mc-job-data").textContent);
  render(initial);
  if (!initial.final) {
    window.setTimeout(poll, pollMs);
  }
})();
