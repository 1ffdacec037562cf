// Tokenizer tab (tabs/tokenizers.py).
// - The text box asks for new views once typing pauses (300 ms), or at once after a paste or a
//   drop, by clicking the hidden #tok-refresh button: one request per pause, not one per key.
//   Pressing "Tokenize" before the pause ends sends that one request instead (no second render
//   of the same text a moment later, which would also drop the hover highlight).
// - New views arrive as HTML in the hidden #tok-views-html box and replace the old ones with one
//   innerHTML: no node-by-node diff of thousands of token spans, so the page does not freeze.
(() => {
  const PAUSE_MS = 300;
  let timer = null;
  document.addEventListener("input", (event) => {
    if (!(event.target.closest && event.target.closest("#tok-text"))) return;
    clearTimeout(timer);
    const whole = event.inputType === "insertFromPaste" || event.inputType === "insertFromDrop";
    timer = setTimeout(() => {
      const button = document.getElementById("tok-refresh");
      if (button) button.click();
    }, whole ? 0 : PAUSE_MS);
  });
  document.addEventListener("click", (event) => {
    if (event.target.closest && event.target.closest("#tok-run")) clearTimeout(timer);
  }, true);

  // The latest views; applied now, or when the tab's content is first put in the page (Gradio
  // mounts a tab's components on its first visit).
  let latest = null;
  function apply(box) {
    if (latest !== null && box.dataset.shown !== String(latest.length) + ":" + latestId) {
      box.innerHTML = latest;
      box.dataset.shown = String(latest.length) + ":" + latestId;
    }
  }
  let latestId = 0;
  // before any update, the views to show are the hidden box's first value: the page is served with
  // them in the visitor's language (ui/page.py), which the visible box's first value is not
  function first() {
    const hidden = document.querySelector("#tok-views-html textarea, #tok-views-html input");
    if (latest === null && hidden && hidden.value) { latest = hidden.value; latestId += 1; }
  }
  new MutationObserver((records) => {
    if (latest === null) first();
    if (latest === null) return;
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType !== Node.ELEMENT_NODE) continue;
        const box = node.matches(".tok-views-box") ? node : node.querySelector(".tok-views-box");
        if (box) apply(box);
      }
    }
  }).observe(document.documentElement, { childList: true, subtree: true });

  window.genaiTokenizer = {
    show(html) {
      if (html !== latest) { latest = html || ""; latestId += 1; }
      const box = document.querySelector("#tok-views .tok-views-box");
      if (box) apply(box);
      return html;
    },
  };
})();
