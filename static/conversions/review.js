/* The review screen: one result at a time, decisions POSTed as JSON, the next result
   shown without reloading the page.

   The source MathML arrives already sanitised by the server (nh3 with an explicit
   MathML allow-list) and is the only value inserted as markup; everything else is set
   with textContent or as a MathLive value. */
"use strict";

(function () {
  const root = document.getElementById("mc-review");
  if (!root) {
    return;
  }
  const csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  const query = root.dataset.query;
  const byId = (id) => document.getElementById(id);
  const edit = byId("mc-edit");
  const rendered = byId("mc-rendered");
  let current = null;
  let busy = false;
  const conflicted = [];

  if (window.MathfieldElement) {
    // Nothing fetched at run time but our own static files; no keypress sounds.
    window.MathfieldElement.soundsDirectory = null;
    window.MathfieldElement.keypressSound = null;
    window.MathfieldElement.plonkSound = null;
  }

  function flash(message, isError) {
    const node = byId("mc-flash");
    node.textContent = message || "";
    node.classList.toggle("mc-error", Boolean(isError));
  }

  function decideUrl(id) {
    const base = root.dataset.decideUrl.replace(/\/0\/decide\/$/, `/${id}/decide/`);
    const params = new URLSearchParams(query);
    if (conflicted.length) {
      params.set("exclude", conflicted.join(","));
    }
    const qs = params.toString();
    return qs ? `${base}?${qs}` : base;
  }

  function setLink(id, href, text) {
    const a = byId(id);
    a.href = href;
    a.textContent = text;
  }

  function setMath(field, latex) {
    // The element upgrades once mathlive.min.js has run; until then keep the text.
    if (typeof field.setValue === "function") {
      field.setValue(latex, { silenceNotifications: true });
    } else {
      field.textContent = latex;
    }
  }

  function leaveLatexMode() {
    // MathLive's LaTeX mode (entered with Esc or a backslash) keeps what is typed outside
    // the value until it is left: value reads '' and setValue shows raw text. Switching
    // back to math mode commits the typed LaTeX, so value and the next setValue work.
    if (edit.mode && edit.mode !== "math") {
      edit.mode = "math";
    }
  }

  function show(data) {
    current = data.item;
    // review_stem.js draws a stem's two versions and its formula editor.
    document.dispatchEvent(new CustomEvent("mc:item", { detail: current }));
    byId("mc-remaining").textContent = `${data.remaining}${data.remaining_capped ? "+" : ""}`;
    byId("mc-empty").hidden = Boolean(current);
    byId("mc-panel").hidden = !current;
    if (!current) {
      return;
    }
    setLink("mc-question-link", current.question_url, current.question_id);
    setLink("mc-job-link", current.job_url, current.job_name);
    byId("mc-item-link").href = current.item_url;
    byId("mc-score").textContent = current.score === null ? "–" : Number(current.score).toFixed(3);
    byId("mc-route").textContent = current.route || "–";
    byId("mc-text").textContent = current.text;
    const reasons = current.reasons.map((reason) => {
      const li = document.createElement("li");
      li.textContent = reason;
      return li;
    });
    byId("mc-reasons").replaceChildren(...reasons);

    // Sanitised on the server through the MathML allow-list (conversions/sanitize.py).
    byId("mc-mathml").innerHTML = current.mathml_html;
    byId("mc-mathml-source").textContent = current.mathml_source;

    byId("mc-latex").textContent = current.latex;
    rendered.hidden = !current.renderable;
    byId("mc-not-rendered").hidden = current.renderable;
    setMath(rendered, current.renderable ? current.latex : "");
    if (document.activeElement === edit) {
      edit.blur(); // the next result starts with the keys free for A / R / S / E
    }
    leaveLatexMode();
    setMath(edit, current.renderable ? current.latex : "");
    byId("mc-edit-latex").textContent = current.renderable ? current.latex : "";

    const history = current.history.map((event) => {
      const li = document.createElement("li");
      const timeZone = document.querySelector('meta[name="mc-time-zone"]')?.content || undefined;
      const when = new Date(event.at).toLocaleString(undefined, { timeZone });
      li.textContent = `${when} · ${event.user || "–"} · ${event.action}${event.latex ? " · " + event.latex : ""}`;
      return li;
    });
    byId("mc-history").replaceChildren(...history);
    byId("mc-question-latex").textContent = current.question_latex || "–";
    byId("mc-locked").hidden = !current.locked;
  }

  async function decide(action, extra) {
    if (!current || busy) {
      return;
    }
    if (action === "edit" && current.stem) {
      return; // a stem is edited one formula at a time (review_stem.js)
    }
    busy = true;
    const body = { action, ...(extra || {}) };
    if (action === "edit") {
      leaveLatexMode();
      body.latex = edit.value !== undefined ? edit.value : edit.textContent;
    }
    const itemId = current.id;
    try {
      const response = await fetch(decideUrl(itemId), {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
        body: JSON.stringify(body),
      });
      const data = await response.json();
      if (response.status === 409) {
        conflicted.push(itemId);
      }
      if (!("item" in data)) {
        flash(data.error, true); // invalid input: stay on this result
        return;
      }
      flash(data.ok ? data.message : data.error, !data.ok);
      show(data);
    } catch (error) {
      flash(root.dataset.msgFailed, true);
    } finally {
      busy = false;
    }
  }

  for (const button of root.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () => decide(button.dataset.action));
  }

  edit.addEventListener("input", () => {
    byId("mc-edit-latex").textContent = edit.value;
  });
  edit.addEventListener("blur", leaveLatexMode);

  // Capture phase: the keys are seen before MathLive handles them inside its field.
  document.addEventListener(
    "keydown",
    (event) => {
      const inEditor = event.target === edit || (event.target.closest && event.target.closest("math-field:not([read-only])"));
      const inForm = event.target.closest && event.target.closest("input, select, textarea");
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        event.stopPropagation();
        decide("edit");
        return;
      }
      if (inEditor) {
        if (event.key === "Escape") {
          // Esc leaves the editor; MathLive would otherwise switch to its LaTeX mode.
          event.preventDefault();
          event.stopPropagation();
          leaveLatexMode();
          edit.blur();
        }
        return;
      }
      if (inForm || event.altKey || event.ctrlKey || event.metaKey) {
        return;
      }
      const actions = { a: "approve", r: "reject", s: "skip" };
      const key = event.key.toLowerCase();
      if (key in actions) {
        event.preventDefault();
        decide(actions[key]);
      } else if (key === "e") {
        event.preventDefault();
        edit.focus();
      }
    },
    true,
  );

  window.mcReview = { decide };
  show(JSON.parse(byId("mc-review-data").textContent));
})();
