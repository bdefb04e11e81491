// windowner: click a token to see the window the model saw and the score of every tag.
// Used by the served page (/?explain=1) and inlined in `predict --output-format html` files.
(function () {
  "use strict";

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function showToken(tok) {
    const panel = document.getElementById("explain-panel");
    if (!panel) return;
    document.querySelectorAll(".tok.selected").forEach((t) => t.classList.remove("selected"));
    tok.classList.add("selected");
    const window_ = JSON.parse(tok.dataset.window);
    const scores = JSON.parse(tok.dataset.scores);
    const chosen = tok.dataset.tag;
    panel.replaceChildren();
    panel.appendChild(el("h2", {}, tok.textContent + " → " + chosen +
      " (p = " + Number(tok.dataset.score).toFixed(2) + ")"));
    const win = el("div", { class: "window" });
    const center = Math.floor(window_.length / 2);
    window_.forEach((w, i) => win.appendChild(el("span", i === center ? { class: "center" } : {}, w)));
    panel.appendChild(el("div", {}, "window as the model sees it:"));
    panel.appendChild(win);
    const table = el("table", { class: "scores" });
    Object.entries(scores)
      .sort((a, b) => b[1] - a[1])
      .forEach(([tag, s]) => {
        const row = el("tr", tag === chosen ? { class: "chosen" } : {});
        row.appendChild(el("td", {}, tag));
        row.appendChild(el("td", {}, s.toFixed(3)));
        table.appendChild(row);
      });
    panel.appendChild(table);
    panel.hidden = false;
  }

  document.addEventListener("click", (event) => {
    const tok = event.target.closest(".tok");
    if (tok) showToken(tok);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target.classList && event.target.classList.contains("tok")) {
      showToken(event.target);
    }
  });
})();
