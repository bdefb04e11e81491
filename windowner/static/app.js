// windowner page: send the text to POST render (the same HTML as `predict --output-format html`)
// and show it. `?explain=1` asks for clickable tokens; `?text=…` tags that text on load.
(function () {
  "use strict";
  const params = new URLSearchParams(window.location.search);
  const explain = params.get("explain") === "1";
  const form = document.getElementById("ner-form");
  const textBox = document.getElementById("text");
  const result = document.getElementById("result");
  const status = document.getElementById("status");

  function setStatus(message, isError) {
    status.textContent = message;
    status.classList.toggle("error", Boolean(isError));
  }

  async function tag(text) {
    setStatus("tagging…");
    const started = performance.now();
    try {
      const response = await fetch("render" + (explain ? "?explain=1" : ""), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ text: text }),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error(body.detail || response.status + " " + response.statusText);
      }
      result.innerHTML = await response.text();
      const ms = (performance.now() - started).toFixed(0);
      const n = result.querySelectorAll("mark.ent").length;
      setStatus(n + " entities, " + ms + " ms" + (explain ? " — click a token to explain it" : ""));
      document.body.dataset.state = "done";
    } catch (error) {
      setStatus("error: " + error.message, true);
      document.body.dataset.state = "error";
    }
  }

  async function showModel() {
    try {
      const card = await (await fetch("model")).json();
      const dev = card.scores && card.scores.dev ? ", dev F1 " + card.scores.dev.f1.toFixed(1) : "";
      document.getElementById("model-info").textContent =
        card.path + " (" + card.objective + dev + ")";
    } catch (error) {
      document.getElementById("model-info").textContent = "";
    }
  }

  const toggle = document.getElementById("explain-toggle");
  toggle.textContent = explain ? "hide explanations" : "explain tokens";
  toggle.addEventListener("click", () => {
    const next = new URLSearchParams();
    if (!explain) next.set("explain", "1");
    if (textBox.value) next.set("text", textBox.value);
    toggle.href = "?" + next.toString();
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    tag(textBox.value);
  });
  textBox.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  showModel();
  if (params.has("text")) {
    textBox.value = params.get("text");
    tag(textBox.value);
  }
})();
