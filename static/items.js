// The item list by keyboard: j/k (or arrows) move the selection, Enter opens the item,
// n/p load the next/previous page (htmx swaps the table; the selection starts over).
(function () {
  "use strict";

  let selected = 0;
  const rows = () => Array.from(document.querySelectorAll("#item-list tr.item-row"));

  function select(i) {
    const all = rows();
    if (!all.length) return;
    selected = Math.max(0, Math.min(i, all.length - 1));
    all.forEach((row, j) => row.classList.toggle("selected", j === selected));
    all[selected].scrollIntoView({ block: "nearest" });
    document.getElementById("item-list").dataset.selected = all[selected].dataset.itemId;
  }

  function follow(id) {
    const link = document.getElementById(id);
    if (link) link.click();
  }

  document.addEventListener("keydown", (ev) => {
    if (!document.getElementById("item-list")) return;
    const t = ev.target;
    if (t instanceof Element && t.closest("input, textarea, select, [contenteditable]")) return;
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    if (ev.key === "j" || ev.key === "ArrowDown") select(selected + 1);
    else if (ev.key === "k" || ev.key === "ArrowUp") select(selected - 1);
    else if (ev.key === "Enter") {
      if (t instanceof Element && t.closest("a, button")) return; // the focused link wins
      const row = rows()[selected];
      if (row) window.location.assign(row.dataset.href);
    } else if (ev.key === "n") follow("next-page");
    else if (ev.key === "p") follow("prev-page");
    else return;
    ev.preventDefault();
  });

  document.addEventListener("click", (ev) => {
    const row = ev.target instanceof Element && ev.target.closest("#item-list tr.item-row");
    if (row) select(rows().indexOf(row));
  });

  document.addEventListener("htmx:afterSettle", (ev) => {
    if (ev.target.id === "item-table" || document.getElementById("item-table")?.contains(ev.target)) {
      select(0);
      document.body.dataset.itemsPage = document.getElementById("item-list")?.querySelector("tr.item-row")?.dataset.itemId || "";
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    select(0);
    document.body.dataset.itemsReady = "1";
  });
})();
