// Tandem's browser code: keyboard shortcuts, ranking drag and drop, upload progress.
// No inline scripts anywhere (the CSP forbids them); everything hangs off data attributes.
(function () {
  "use strict";

  let selected = 0;
  let ruleChord = false;
  let startedAt = Date.now();

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const form = () => $("#label-form");
  const responses = () => $$("#label-form .response");

  function typing(el) {
    return el && (el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && !["radio", "checkbox"].includes(el.type)) || el.isContentEditable);
  }

  function select(i) {
    const items = responses();
    if (!items.length) return;
    selected = Math.max(0, Math.min(items.length - 1, i));
    items.forEach((el, n) => el.classList.toggle("selected", n === selected));
  }

  function syncRanking() {
    const input = $("#label-form input[name=ranking]");
    if (!input) return;
    input.value = $$("#ranking-list .response").map((li) => li.dataset.responseId).join(",");
    $$("#ranking-list .response .letter").forEach((el, n) => { el.dataset.rank = String(n + 1); });
  }

  function move(delta) {
    const list = $("#ranking-list");
    if (!list) return;
    const items = $$("#ranking-list .response");
    const from = selected, to = from + delta;
    if (to < 0 || to >= items.length) return;
    if (delta > 0) list.insertBefore(items[to], items[from]); else list.insertBefore(items[from], items[to]);
    syncRanking();
    select(to);
  }

  function initPanel() {
    startedAt = Date.now();
    ruleChord = false;
    select(0);
    syncRanking();
    const notice = $("#label-notice");
    if (notice) setTimeout(() => notice.classList.add("fade"), 1500);
  }

  // A key can arrive between htmx inserting a new panel and wiring it up; a click then
  // would submit the plain form (a full page load that loses the panel's state). Wiring
  // the form first is harmless when htmx has already done it.
  function ready(el) {
    const f = el && el.closest ? el.closest("form") : null;
    if (f && window.htmx && f.hasAttribute("hx-post")) window.htmx.process(f);
    return el;
  }

  function press(el) {
    if (el) ready(el).click();
    return !!el;
  }

  function submitLabel() {
    const f = form();
    if (f) ready(f).requestSubmit();
  }

  // The review queue: A approve, 1-8 best response, E edit, Ctrl+Enter save the edit, S skip.
  function reviewKeys(ev) {
    const form = $("#review-form");
    if (!form) return false;
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && ev.target.closest && ev.target.closest("#review-editor")) {
      press($("#review-edit"));
      return true;
    }
    if (typing(ev.target) || ev.altKey || ev.ctrlKey || ev.metaKey) return false;
    const key = ev.key.toLowerCase();
    if (key === "a") return press($("#review-approve"));
    if (key === "s") return press($("#review-skip"));
    if (key === "e") { const d = $("#review-editor"); d.open = true; $("textarea", d).focus(); return true; }
    if (/^[1-8]$/.test(ev.key)) return press($(`button[data-best-index="${ev.key}"]`, form));
    return false;
  }

  // The adjudication queue: 1-8 this response is best, T tie, S skip.
  function adjudicationKeys(ev) {
    const form = $("#adjudication-form");
    if (!form || typing(ev.target) || ev.altKey || ev.ctrlKey || ev.metaKey) return false;
    const key = ev.key.toLowerCase();
    if (key === "s") return press($("#adjudication-skip"));
    if (key === "t") return press($("#adjudication-tie"));
    if (/^[1-8]$/.test(ev.key)) return press($(`button[data-adj-best-index="${ev.key}"]`, form));
    return false;
  }

  document.addEventListener("keydown", (ev) => {
    if (reviewKeys(ev) || adjudicationKeys(ev)) { ev.preventDefault(); return; }
    if (ev.key === "?" && !typing(ev.target)) { toggleHelp(); ev.preventDefault(); return; }
    const f = form();
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && f) { submitLabel(); ev.preventDefault(); return; }
    if (typing(ev.target)) {
      if (ev.key === "Escape") ev.target.blur();
      return;
    }
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const key = ev.key.toLowerCase();
    if (!f) {
      if (key === "n" && press($("#next-item"))) ev.preventDefault();
      return;
    }
    const type = f.dataset.taskType;
    const current = responses()[selected];
    if (ruleChord && /^[1-9]$/.test(ev.key)) {
      ruleChord = false;
      const box = current && $(`input[data-rule-index="${ev.key}"]`, current);
      if (box) box.checked = !box.checked;
      ev.preventDefault();
      return;
    }
    ruleChord = false;
    if (ev.key === "Enter") { submitLabel(); ev.preventDefault(); return; }
    if (type === "ranking" && ev.shiftKey && (key === "j" || ev.key === "ArrowDown")) { move(1); ev.preventDefault(); return; }
    if (type === "ranking" && ev.shiftKey && (key === "k" || ev.key === "ArrowUp")) { move(-1); ev.preventDefault(); return; }
    if (key === "j" || ev.key === "ArrowDown") { select(selected + 1); ev.preventDefault(); return; }
    if (key === "k" || ev.key === "ArrowUp") { select(selected - 1); ev.preventDefault(); return; }
    if (key === "r") { ruleChord = true; ev.preventDefault(); return; }
    if (key === "s") { press($("#skip-item")); ev.preventDefault(); return; }
    if (ev.key === "/") { const r = $("textarea[name=rationale]", f); if (r) r.focus(); ev.preventDefault(); return; }
    if (type === "pairwise" && /^[1-5]$/.test(ev.key)) {
      const radio = $(`input[name=scale][value="${ev.key}"]`, f);
      if (radio) radio.checked = true;
      ev.preventDefault();
      return;
    }
    if (type === "rate_and_edit" && current) {
      if (/^[1-7]$/.test(ev.key)) {
        const radio = $(`input[type=radio][value="${ev.key}"]`, current);
        if (radio) radio.checked = true;
        ev.preventDefault();
        return;
      }
      if (key === "e") {
        const details = $("details.editor", current);
        if (details) { details.open = true; $("textarea", details).focus(); }
        ev.preventDefault();
      }
    }
  });

  function toggleHelp() {
    const help = $("#shortcuts");
    if (help) help.hidden = !help.hidden;
  }

  document.addEventListener("click", (ev) => {
    const t = ev.target;
    if (!(t instanceof Element)) return;
    if (t.closest("#toggle-help")) { toggleHelp(); return; }
    const card = t.closest("#label-form .response");
    if (card) select(responses().indexOf(card));
    if (t.closest(".move-up")) { move(-1); }
    if (t.closest(".move-down")) { move(1); }
  });

  // An edited response: the last textarea changed is the edit that gets submitted.
  document.addEventListener("input", (ev) => {
    const t = ev.target;
    if (!(t instanceof HTMLTextAreaElement) || !t.dataset.editFor) return;
    const f = form();
    const changed = t.value.trim() !== (t.dataset.original || "").trim();
    $("input[name=edit_response_id]", f).value = changed ? t.dataset.editFor : "";
    $("input[name=edit_text]", f).value = changed ? t.value : "";
  });

  // Drag and drop for rankings.
  let dragged = null;
  document.addEventListener("dragstart", (ev) => {
    const li = ev.target instanceof Element && ev.target.closest("#ranking-list .response");
    if (!li) return;
    dragged = li;
    li.classList.add("dragging");
    ev.dataTransfer.effectAllowed = "move";
    ev.dataTransfer.setData("text/plain", li.dataset.responseId);
  });
  document.addEventListener("dragover", (ev) => {
    const over = ev.target instanceof Element && ev.target.closest("#ranking-list .response");
    if (!dragged || !over || over === dragged) return;
    ev.preventDefault();
    const rect = over.getBoundingClientRect();
    const after = ev.clientY > rect.top + rect.height / 2;
    over.parentNode.insertBefore(dragged, after ? over.nextSibling : over);
  });
  document.addEventListener("dragend", () => {
    if (!dragged) return;
    dragged.classList.remove("dragging");
    select(responses().indexOf(dragged));
    dragged = null;
    syncRanking();
  });

  document.addEventListener("htmx:configRequest", (ev) => {
    if (ev.target.id !== "label-form") return;
    const spent = String(Date.now() - startedAt);
    const params = ev.detail.parameters;
    if (params instanceof FormData) params.set("time_spent_ms", spent); else params.time_spent_ms = spent;
  });

  // Upload progress for imports.
  document.addEventListener("htmx:xhr:progress", (ev) => {
    if (ev.target.id !== "import-form" || !ev.detail.lengthComputable) return;
    const bar = $("#upload-progress");
    bar.hidden = false;
    bar.value = Math.round((ev.detail.loaded / ev.detail.total) * 100);
    $("#upload-label").textContent = bar.value < 100 ? `Uploading… ${bar.value}%` : "Checking every line…";
  });
  document.addEventListener("htmx:afterRequest", (ev) => {
    if (ev.target.id === "import-form") $("#upload-label").textContent = "";
  });

  document.addEventListener("htmx:load", (ev) => {
    if (ev.target.id === "label-panel" || ev.target.querySelector?.("#label-form")) initPanel();
  });
  document.addEventListener("DOMContentLoaded", () => {
    initPanel();
    document.body.dataset.ready = "1";
  });
})();
