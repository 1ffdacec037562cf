// Tokenizer tab (tabs/tokenizers.py).
// - The text box asks for new views once typing pauses (300 ms), or at once after a paste or a
//   drop, by clicking the hidden #tok-refresh button: one request per pause, not one per key.
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

  let shown = null;
  window.genaiTokenizer = {
    show(html) {
      const box = document.querySelector("#tok-views .tok-views-box");
      if (box && html !== shown) {
        box.innerHTML = html || "";
        shown = html;
      }
      return html;
    },
  };
})();
