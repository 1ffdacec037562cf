// Token probability tooltip (ui/token_probs.py renders the tokens). One tooltip element for the
// page, shown at once on mouse hover, on tap (phones) and on keyboard focus; arrow keys move
// between the tokens of an output, Escape hides the tooltip. Numbers use the output's language.
(() => {
  let tip = null;
  let anchor = null;

  function element() {
    if (tip && tip.isConnected) return tip;
    tip = document.createElement("div");
    tip.id = "token-tip";
    tip.className = "token-tip";
    tip.setAttribute("role", "tooltip");
    tip.hidden = true;
    document.body.appendChild(tip);
    return tip;
  }

  function shown(text) {
    // the token as students should read it: spaces and line breaks visible
    return text.replace(/ /g, "·").replace(/\n/g, "↵").replace(/\t/g, "→") || "∅";
  }

  function fill(token) {
    const box = token.closest(".with-probs");
    if (!box) return false;
    const lang = box.dataset.lang || document.documentElement.lang || "en";
    const fmt = new Intl.NumberFormat(lang, { style: "percent", maximumFractionDigits: 1 });
    const pct = { format: (x) => (x > 0 && x < 0.001 ? `< ${fmt.format(0.001)}` : fmt.format(x)) };
    let top = [];
    try { top = JSON.parse(token.dataset.top || "[]"); } catch { top = []; }
    const chosen = token.textContent;
    const p = Number(token.dataset.p);
    const tipEl = element();
    tipEl.replaceChildren();
    tipEl.setAttribute("lang", lang);
    const head = document.createElement("div");
    head.className = "tt-head";
    const code = document.createElement("code");
    code.textContent = shown(chosen);
    head.append(code, ` ${box.dataset.tipProb || "p"} ${pct.format(p)}`);
    tipEl.append(head);
    const title = document.createElement("div");
    title.className = "tt-title";
    title.textContent = box.dataset.tipAlts || "Top 5";
    tipEl.append(title);
    if (!top.length) {
      const none = document.createElement("div");
      none.textContent = box.dataset.tipNone || "—";
      tipEl.append(none);
    }
    let marked = false;
    for (const [text, prob] of top) {
      const isChosen = !marked && text === chosen;
      marked = marked || isChosen;
      const row = document.createElement("div");
      row.className = isChosen ? "tt-alt chosen" : "tt-alt";
      const mark = document.createElement("span");
      mark.className = "tt-mark";
      mark.textContent = isChosen ? "✔" : "";
      const label = document.createElement("code");
      label.textContent = shown(text);
      const value = document.createElement("span");
      value.className = "tt-pct";
      value.textContent = pct.format(prob);
      const bar = document.createElement("span");
      bar.className = "tt-bar";
      bar.style.width = `${Math.max(2, Math.round(prob * 100))}%`;
      row.append(mark, label);
      if (isChosen) {
        const note = document.createElement("span");
        note.className = "tt-note";
        note.textContent = box.dataset.tipChosen || "";
        row.append(note);
      }
      row.append(value, bar);
      tipEl.append(row);
    }
    return true;
  }

  function place(token) {
    const tipEl = element();
    const r = token.getBoundingClientRect();
    tipEl.hidden = false;
    const w = tipEl.offsetWidth, h = tipEl.offsetHeight;
    const vw = document.documentElement.clientWidth;
    let left = Math.min(Math.max(4, r.left + r.width / 2 - w / 2), vw - w - 4);
    let top = r.bottom + 6;
    if (top + h > window.innerHeight - 4 && r.top - h - 6 > 4) top = r.top - h - 6;
    tipEl.style.left = `${left + window.scrollX}px`;
    tipEl.style.top = `${top + window.scrollY}px`;
  }

  function show(token) {
    if (anchor === token && tip && !tip.hidden) return;
    if (!fill(token)) return;
    if (anchor) anchor.removeAttribute("aria-describedby");
    anchor = token;
    token.setAttribute("aria-describedby", "token-tip");
    place(token);
  }

  function hide() {
    if (tip) tip.hidden = true;
    if (anchor) anchor.removeAttribute("aria-describedby");
    anchor = null;
  }

  const tokenOf = (target) => (target && target.closest ? target.closest(".with-probs .tok-p") : null);

  document.addEventListener("mouseover", (e) => {
    const token = tokenOf(e.target);
    if (token) show(token);
    else if (anchor && !(document.activeElement && tokenOf(document.activeElement))) hide();
  });
  // taps: pointer events with a touch pointer, then the click that follows
  document.addEventListener("click", (e) => {
    const token = tokenOf(e.target);
    if (token) { show(token); return; }
    if (!(e.target.closest && e.target.closest(".token-tip"))) hide();
  });
  document.addEventListener("focusin", (e) => {
    const token = tokenOf(e.target);
    if (token) {
      const box = token.closest(".with-probs");
      box.querySelectorAll('.tok-p[tabindex="0"]').forEach((el) => { if (el !== token) el.tabIndex = -1; });
      token.tabIndex = 0;
      show(token);
    }
  });
  document.addEventListener("focusout", (e) => {
    if (tokenOf(e.target) && !tokenOf(e.relatedTarget)) hide();
  });
  document.addEventListener("keydown", (e) => {
    const token = tokenOf(document.activeElement);
    if (e.key === "Escape") { hide(); return; }
    if (!token) return;
    let next = null;
    if (e.key === "ArrowRight" || e.key === "ArrowDown") next = token.nextElementSibling;
    else if (e.key === "ArrowLeft" || e.key === "ArrowUp") next = token.previousElementSibling;
    else if (e.key === "Home") next = token.parentElement.firstElementChild;
    else if (e.key === "End") next = token.parentElement.lastElementChild;
    if (next && next.classList.contains("tok-p")) {
      e.preventDefault();
      next.focus();
    }
  });
  window.addEventListener("scroll", () => { if (anchor && tip && !tip.hidden) place(anchor); }, { passive: true });
})();
