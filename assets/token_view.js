// Tokenizer views (ui/token_view.py). Hovering a token:
// - gives it a title "id · piece · bytes", built here from data-i and the piece shown (the
//   server leaves titles out of the pieces view: half the HTML for long texts);
// - highlights the same characters in every tokenizer's view. Each view's spans are indexed
//   once per render (data-r changes on each one) and searched by bisection.
(() => {
  const WS = { "·": " ", "→": "\t", "↵": "\n", "␍": "\r" };
  const hex = (b) => b.toString(16).toUpperCase().padStart(2, "0");
  const isMarker = (n) => n.nodeType === 1 && n.classList.contains("ws");
  const cache = new Map();
  let lit = [];

  function title(el) {
    const id = el.dataset.i;
    if (el.classList.contains("sp")) return `id ${id} · ${el.textContent}`;
    let bytes, piece;
    if (el.classList.contains("byte")) {  // shown as hex bytes, a space marker for 0x20
      bytes = [];
      el.childNodes.forEach((n) => {
        if (isMarker(n)) bytes.push(0x20);
        else n.textContent.split(/\s+/).filter(Boolean).forEach((h) => bytes.push(parseInt(h, 16)));
      });
      piece = bytes.map((b) => `<0x${hex(b)}>`).join("");
    } else {
      let text = "";
      el.childNodes.forEach((n) => { text += isMarker(n) ? (WS[n.textContent] ?? "") : n.textContent; });
      bytes = Array.from(new TextEncoder().encode(text));
      piece = JSON.stringify(text);
    }
    return `id ${id} · ${piece} · bytes ${bytes.map(hex).join(" ")}`;
  }

  function index(box, key) {
    let idx = cache.get(key);
    if (idx && (idx.els.length === 0 || idx.els[0].isConnected)) return idx;  // re-mounted: index again
    const els = [], starts = [], ends = [];
    box.querySelectorAll(".tk").forEach((el) => {
      const a = Number(el.dataset.s), b = Number(el.dataset.e);
      if (a >= 0 && b > a) { els.push(el); starts.push(a); ends.push(b); }
    });
    idx = { els, starts, ends };
    if (cache.size > 64) cache.clear();
    cache.set(key, idx);
    return idx;
  }

  document.addEventListener("mouseover", (event) => {
    const tok = event.target.closest ? event.target.closest(".tokview .tk, .tokview .tkg") : null;
    lit.forEach((el) => el.classList.remove("hl"));
    lit = [];
    if (!tok) return;
    if (tok.classList.contains("tk") && !tok.title && tok.dataset.i) tok.title = title(tok);
    const s = Number(tok.dataset.s), e = Number(tok.dataset.e);
    if (!(s >= 0) || !(e > s)) return;
    const grid = tok.closest(".tokgrid") || tok.closest(".tokview");
    const render = grid.dataset.r || "";
    (grid.matches(".tokview") ? [grid] : grid.querySelectorAll(".tokview")).forEach((view, v) => {
      const box = view.querySelector(".tokpieces");
      if (!box) return;
      const idx = index(box, `${render}:${v}:${view.dataset.tok}`);
      let lo = 0, hi = idx.ends.length;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (idx.ends[mid] <= s) lo = mid + 1; else hi = mid; }
      for (let i = lo; i < idx.starts.length && idx.starts[i] < e; i++) {
        idx.els[i].classList.add("hl");
        lit.push(idx.els[i]);
      }
    });
  });
})();
