/* The review screen for a whole question stem (conversions/stem_reviews.py).

   Both versions arrive sanitised by the server: the source stem (nh3 allow-list of text
   markup and MathML, drawn natively by the browser) and the converted stem (text markup
   whose \(...\) and \[...\] MathLive's renderMathInElement draws). A formula's LaTeX is
   set only as text or as a MathLive value. review.js calls window.mcReview.decide; a fix
   that leaves other formulas to fix answers with the same stem, its fixes shown. */
"use strict";

(function () {
  const byId = (id) => document.getElementById(id);
  let current = null;

  function setMath(field, latex) {
    if (typeof field.setValue === "function") {
      field.setValue(latex, { silenceNotifications: true });
    } else {
      field.textContent = latex;
    }
  }

  function drawResult() {
    const target = byId("mc-stem-result");
    if (window.MathLive && typeof window.MathLive.renderMathInElement === "function") {
      window.MathLive.renderMathInElement(target);
    } else if (typeof window.renderMathInElement === "function") {
      window.renderMathInElement(target);
    }
  }

  function pick(index) {
    const formula = current.stem.formulas[index];
    if (!formula) {
      return;
    }
    setMath(byId("mc-stem-edit"), formula.latex);
    byId("mc-stem-latex").textContent = formula.latex;
    const reasons = (formula.reasons.length ? formula.reasons : formula.error ? [formula.error] : []).map((reason) => {
      const li = document.createElement("li");
      li.textContent = reason;
      return li;
    });
    byId("mc-stem-reasons").replaceChildren(...reasons);
  }

  function show(item) {
    current = item && item.stem ? item : null;
    const stem = byId("mc-stem");
    if (!stem) {
      return;
    }
    stem.hidden = !current;
    // The single-formula cards make no sense for a stem.
    for (const id of ["mc-mathml", "mc-rendered", "mc-edit"]) {
      const card = byId(id).closest("section");
      if (card) {
        card.hidden = Boolean(current);
      }
    }
    if (!current) {
      return;
    }
    // Sanitised on the server (conversions/stem_reviews.py).
    byId("mc-stem-source").innerHTML = current.stem.source_html;
    byId("mc-stem-result").innerHTML = current.stem.result_html;
    drawResult();
    const label = stem.dataset.msgFormula;
    const options = current.stem.formulas.map((formula, index) => {
      const option = document.createElement("option");
      option.value = String(index);
      // ⚠ still to fix (no LaTeX, or LaTeX that failed the checks); ✎ fixed in review
      const mark = formula.resolved ? (formula.fixed ? " ✎" : "") : " ⚠";
      option.textContent = `${label} ${index + 1}${mark}`;
      return option;
    });
    byId("mc-stem-index").replaceChildren(...options);
    const firstBad = current.stem.formulas.findIndex((formula) => !formula.resolved);
    byId("mc-stem-index").value = String(Math.max(0, firstBad));
    pick(Math.max(0, firstBad));
  }

  document.addEventListener("mc:item", (event) => show(event.detail));

  window.addEventListener("DOMContentLoaded", () => {
    const select = byId("mc-stem-index");
    if (!select) {
      return;
    }
    select.addEventListener("change", () => pick(Number(select.value)));
    const edit = byId("mc-stem-edit");
    edit.addEventListener("input", () => {
      byId("mc-stem-latex").textContent = edit.value;
    });
    byId("mc-stem-save").addEventListener("click", () => {
      if (!current || !window.mcReview) {
        return;
      }
      const latex = edit.value !== undefined ? edit.value : edit.textContent;
      window.mcReview.decide("formula", { index: Number(select.value), latex });
    });
  });
})();
