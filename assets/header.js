// The header's language switch (FR / EN) and presentation mode (app.py builds both controls).
//
// Language: ?lang=fr|en in the URL, else the last choice (localStorage), else the browser's.
// The choice is stored twice: localStorage (this page, on reload) and the genai_lang cookie, which
// every request to the server carries, so that text made server-side (ui.i18n.request_lang)
// follows the switch without any handler taking a language argument. Gradio's own client-side
// translations (component labels, its "Settings → Language") follow through its changeLocale();
// the few Gradio texts that are not translatable (toast titles, "processing") are rewritten here.
//
// Presentation: ?present=1|0 in the URL, else the last choice; a class on <body> (assets/style.css).
(() => {
  const LANG_KEY = "genai_lang";
  const PRESENT_KEY = "genai_present";
  const LANGS = ["fr", "en"];
  const YEAR = 365 * 24 * 3600;

  const store = {
    get(key) { try { return window.localStorage.getItem(key); } catch { return null; } },
    set(key, value) { try { window.localStorage.setItem(key, value); } catch { /* private mode */ } },
  };

  function cookie(name) {
    const hit = document.cookie.split(";").map((c) => c.trim()).find((c) => c.startsWith(name + "="));
    return hit ? decodeURIComponent(hit.slice(name.length + 1)) : null;
  }

  function param(name) {
    try { return new URLSearchParams(window.location.search).get(name); } catch { return null; }
  }

  function initialLang(forced) {
    if (LANGS.includes(forced)) return forced;
    const boot = window.genaiBoot;
    if (boot && LANGS.includes(boot.lang)) return boot.lang;   // assets/boot.js decided before Gradio started
    for (const candidate of [param("lang"), store.get(LANG_KEY), cookie(LANG_KEY)]) {
      if (LANGS.includes(candidate)) return candidate;
    }
    const nav = (navigator.languages && navigator.languages[0]) || navigator.language || "en";
    return nav.toLowerCase().startsWith("fr") ? "fr" : "en";
  }

  // Gradio's i18n store lives in its "core" module; importing the URL the page already loaded
  // returns that same module instance, whose changeLocale() is what Settings → Language calls.
  let core = null;
  async function gradioCore() {
    if (core) return core;
    const url = performance.getEntriesByType("resource").map((e) => e.name)
      .find((name) => /\/assets\/core-[^/]+\.js$/.test(name));
    if (!url) return null;
    try { core = await import(url); } catch { core = null; }
    return core;
  }

  // Gradio texts with no translation key: toast titles and the status tracker's "processing".
  const GRADIO_TEXT = {
    fr: { "Warning": "Avertissement", "Error": "Erreur", "Info": "Information", "Success": "Succès",
          "processing |": "traitement |", "queue:": "file :", "Runs": "Exécutions" },
  };
  let current = "en";

  // slider bounds: Gradio prints 0.05 whatever the language
  const DECIMAL = /^(-?\d+)\.(\d+)$/;
  function patchNumber(el) {
    const text = el.firstChild;
    if (!text || text.nodeType !== Node.TEXT_NODE) return;
    const m = DECIMAL.exec(text.nodeValue.trim());
    if (m) text.nodeValue = `${m[1]},${m[2]}`;
  }

  // progress bars: "desc - 55.0%"
  const PERCENT = /(\d+)\.(\d)%$/;
  function patchPercent(el) {
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let text = walker.nextNode(); text; text = walker.nextNode()) {
      if (PERCENT.test(text.nodeValue)) text.nodeValue = text.nodeValue.replace(PERCENT, "$1,$2\u202f%");
    }
  }

  // file sizes next to download links: "660.0 B" → "660,0 o"
  const SIZE = /(\d+)\.(\d)(\s|\u00a0)(B|KB|MB|GB|PB)\b/;
  const SIZE_UNITS = { B: "o", KB: "Ko", MB: "Mo", GB: "Go", PB: "Po" };
  function patchSize(el) {
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let text = walker.nextNode(); text; text = walker.nextNode()) {
      const m = SIZE.exec(text.nodeValue);
      if (m) text.nodeValue = text.nodeValue.replace(SIZE, `${m[1]},${m[2]}\u00a0${SIZE_UNITS[m[4]]}`);
    }
  }

  function patchText(node) {
    if (node.matches && node.matches(NUMBERS)) { patchNumber(node); return; }
    if (node.matches && node.matches(SIZES)) { patchSize(node); return; }
    if (node.matches && node.matches(".progress-level-inner")) { patchPercent(node); return; }
    const table = GRADIO_TEXT[current];
    if (!table) return;
    const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
    for (let text = walker.currentNode; text; text = walker.nextNode()) {
      if (text.nodeType !== Node.TEXT_NODE) continue;
      const raw = text.nodeValue;
      const trimmed = raw.trim();
      let value = raw;
      if (table[trimmed]) value = raw.replace(trimmed, table[trimmed]);
      else if (trimmed.startsWith("queue:")) value = raw.replace("queue:", table["queue:"]);
      value = localTimes(value);
      if (value !== raw) text.nodeValue = value;
    }
  }

  // Gradio's timers in its status texts: "0.2s", "1.4/3.0s" → "0,2 s", "1,4/3,0 s"
  const TIME = /(\d+)\.(\d+)(?=(\/\d+(\.\d+)?)?s\b)/g;
  function localTimes(text) {
    if (!/\d\.\d+(\/\d+(\.\d+)?)?s\b/.test(text)) return text;
    return text.replace(TIME, "$1,$2").replace(/(\d)s\b/g, "$1\u00a0s");
  }

  // A number box (a slider's, gr.Number) shows its value as the browser writes it ("0.95" whatever the
  // page's language). Outside English, a twin in the page's language ("0,95") takes the box's place
  // (same classes: same look) while the box is not being edited; a click or Tab puts the box back.
  const NUMBER_VALUE = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value");
  const TWIN_STYLE = ["paddingTop", "paddingRight", "paddingBottom", "paddingLeft", "borderTopWidth", "borderRightWidth",
    "borderBottomWidth", "borderLeftWidth", "borderTopStyle", "borderRightStyle", "borderBottomStyle", "borderLeftStyle",
    "borderTopColor", "borderRightColor", "borderBottomColor", "borderLeftColor", "borderRadius", "backgroundColor",
    "fontSize", "fontFamily", "fontWeight", "lineHeight", "color", "minWidth", "minHeight", "boxSizing", "flex"];
  function showLocalNumber(input) {
    let shown = input.__genaiShown;
    if (!shown) {
      shown = document.createElement("span");
      shown.className = `${input.className} genai-number`;
      shown.setAttribute("aria-hidden", "true");     // screen readers read the box itself
      const style = getComputedStyle(input);            // the box's look, taken before it steps aside
      for (const prop of TWIN_STYLE) shown.style[prop] = style[prop];
      shown.style.justifyContent = { center: "center", right: "flex-end", end: "flex-end" }[style.textAlign] || "flex-start";
      const parent = input.parentElement;
      if (parent && input.offsetWidth && input.offsetWidth >= parent.clientWidth - 2) shown.style.width = "100%";
      shown.addEventListener("mousedown", (e) => { e.preventDefault(); input.focus(); input.select(); });
      input.insertAdjacentElement("afterend", shown);
      input.__genaiShown = shown;
      input.classList.add("genai-localized");
      Object.defineProperty(input, "value", {
        configurable: true,
        get() { return NUMBER_VALUE.get.call(this); },
        set(v) { NUMBER_VALUE.set.call(this, v); showLocalNumber(this); },
      });
      for (const kind of ["input", "change", "blur"]) input.addEventListener(kind, () => showLocalNumber(input));
    }
    const raw = NUMBER_VALUE.get.call(input);
    shown.textContent = current === "en" ? raw : raw.replace(/^(-?\d+)\.(\d+)$/, "$1,$2");
    document.body.classList.toggle("genai-numbers", current !== "en");
  }
  function localNumbers(root) {
    if (root.nodeType !== Node.ELEMENT_NODE) return;
    if (root.matches('input[type="number"]')) showLocalNumber(root);
    root.querySelectorAll('input[type="number"]').forEach(showLocalNumber);
  }

  const NUMBERS = ".min_value, .max_value";
  const SIZES = "a[download]";
  const CHROME = `.toast-title, .progress-text, .meta-text, .meta-text-center, .progress-level-inner, footer, ${NUMBERS}, ${SIZES}`;
  function patchAll(root) {
    if (root.nodeType !== Node.ELEMENT_NODE) {
      if (root.nodeType === Node.TEXT_NODE && root.parentElement && root.parentElement.closest(CHROME)) {
        patchText(root.parentElement);
      }
      return;
    }
    if (root.matches(CHROME)) patchText(root);
    root.querySelectorAll(CHROME).forEach(patchText);
  }

  const observer = new MutationObserver((records) => {
    if (current === "en") return;
    for (const record of records) {
      if (record.type === "characterData") patchAll(record.target);
      else record.addedNodes.forEach((node) => { patchAll(node); localNumbers(node); });
    }
  });

  function keepInUrl(name, value) {
    // a ?lang= or ?present= already in the address follows the switch, so a reload keeps the choice
    try {
      const url = new URL(window.location.href);
      if (!url.searchParams.has(name) || url.searchParams.get(name) === value) return;
      url.searchParams.set(name, value);
      window.history.replaceState(window.history.state, "", url);
    } catch { /* not a normal page URL */ }
  }

  async function setLang(lang) {
    if (!LANGS.includes(lang)) return current;
    current = lang;
    keepInUrl("lang", lang);
    store.set(LANG_KEY, lang);
    document.cookie = `${LANG_KEY}=${lang}; path=/; max-age=${YEAR}; SameSite=Lax`;
    document.documentElement.setAttribute("lang", lang);
    document.body.dataset.lang = lang;
    if (window.genaiBoot) document.title = window.genaiBoot.text("page_title", lang);
    const module = await gradioCore();
    if (module && module.changeLocale) module.changeLocale(lang);
    if (lang !== "en") patchAll(document.body);
    localNumbers(document.body);
    const params = new URLSearchParams(window.location.search);
    if (chartLang !== lang && (params.has("x") || params.has("tab") || document.querySelector(".vega-embed"))) {
      chartLocale(lang);
    }
    return lang;
  }

  function setPresentation(on) {
    const value = !!on;
    if (value) maskAll();
    store.set(PRESENT_KEY, value ? "1" : "0");
    keepInUrl("present", value ? "1" : "0");
    document.body.classList.toggle("presentation", value);
    return value;
  }

  // Presentation mode, 1280×800 at the back of a room: a run's results are what students must see, so
  // pressing a tab's main action brings its results up to the top of the screen (the prompt and the
  // buttons scroll away above; the results fill in where everyone is looking).
  const RESULTS = {
    "bvi-run": "#bvi-panes", "bvi-new-sample": "#bvi-panes", "tech-run": "#tech-result",
    "tech-new-sample": "#tech-result", "img-run": "#img-grid-heading, #img-grid", "quant-l-run": "#quant-l-status",
    "quant-w-run": "#quant-hist", "tok-run": "#tok-views",
  };
  document.addEventListener("click", (e) => {
    if (!document.body.classList.contains("presentation")) return;
    const button = e.target.closest && e.target.closest("button[id]");
    const target = button && RESULTS[button.id] && document.querySelector(RESULTS[button.id]);
    if (target) requestAnimationFrame(() => target.scrollIntoView({ block: "start" }));
  }, true);

  function initialPresentation() {
    const fromUrl = param("present");
    if (fromUrl === "1" || fromUrl === "0") return fromUrl === "1";
    return store.get(PRESENT_KEY) === "1";
  }

  // Chart axes (gr.LinePlot, gr.BarPlot: Vega) in the page's language. Vega formats numbers with a
  // default locale that each chart takes when it is drawn; Gradio's Vega-Embed module sets it
  // (its `formatLocale` option), and the page imports that same module (ui/page.py names it). Done
  // before a chart can be drawn: on a tab click, on a link opening a tab, on a language switch (a
  // chart already drawn keeps its format until it is drawn again).
  const VEGA_LOCALE = {
    fr: { decimal: ",", thousands: "\u202f", grouping: [3], currency: ["", "\u00a0€"], percent: "\u202f%" },
    en: { decimal: ".", thousands: ",", grouping: [3], currency: ["$", ""] },
  };
  let chartLang = "en";
  let chartDone = Promise.resolve();
  function gradioChunk(file) {
    const base = ((performance.getEntriesByType("resource").map((e) => e.name)
      .find((name) => /\/assets\/core-[^/]+\.js$/.test(name))) || "").replace(/core-[^/]+\.js$/, "");
    return file && base ? base + file : null;
  }
  function chartModule() { return gradioChunk((window.genaiServed || {}).chart); }
  function chartLocale(lang) {
    const url = chartModule();
    if (!url || lang === chartLang || !VEGA_LOCALE[lang]) return chartDone;
    chartLang = lang;
    chartDone = chartDone.then(() => import(url)).then((module) => {
      const holder = document.createElement("div");
      return module.default(holder, { $schema: "https://vega.github.io/schema/vega/v5.json" },
                            { formatLocale: VEGA_LOCALE[lang], actions: false, renderer: "none" })
        .then((result) => result.finalize());
    }).catch(() => { chartLang = "en"; });
    return chartDone;
  }
  document.addEventListener("click", (e) => {
    if (e.target.closest && e.target.closest('[role="tab"], button.tab-button, [role="tablist"] button')) {
      chartLocale(current);
    }
  }, true);

  // A masked secret (the teacher link) shown on request, masked again by itself after `seconds`, and
  // at once when the page is hidden or presentation mode is turned on: it never stays on a projector.
  const revealed = new Set();
  function maskAll() {
    revealed.forEach((input) => { input.type = "password"; });
    revealed.clear();
  }
  function revealSecret(selector, seconds) {
    const input = document.querySelector(`${selector} input, ${selector} textarea`);
    if (!input || input.type !== "password") return;
    input.type = "text";
    revealed.add(input);
    setTimeout(() => { input.type = "password"; revealed.delete(input); }, seconds * 1000);
  }
  document.addEventListener("visibilitychange", () => { if (document.hidden) maskAll(); });

  observer.observe(document.documentElement, { childList: true, subtree: true, characterData: true });

  // Gradio's own Settings → Language sets <html lang>: the header's switch follows (and with it the
  // cookie and the server's texts), so the two never disagree.
  new MutationObserver(() => {
    const chosen = (document.documentElement.getAttribute("lang") || "").slice(0, 2).toLowerCase();
    if (!LANGS.includes(chosen) || chosen === current) return;
    const input = document.querySelector(`#lang-switch input[value="${chosen}"]`);
    if (input && !input.checked) input.click();
  }).observe(document.documentElement, { attributes: true, attributeFilter: ["lang"] });
  // On load: the page's language and presentation mode. When the server already rendered the page in
  // that language (ui/page.py: the usual case), there is nothing to re-render: the page is ready at
  // once, no event is sent. Otherwise the switch's value changes, and its event re-renders the views.
  async function start(forced) {
    const lang = initialLang(forced);
    await setLang(lang);
    const boot = window.genaiBoot;
    if (boot && (boot.served === lang || (forced && boot.served))) document.body.dataset.langReady = lang;
    // once the page is usable and idle: the chunks a tab's first open would wait for (the chart module,
    // 650 kB of script compiled once; matplotlib plots) are loaded ahead; chart numbers in the page's
    // language at the same time
    const warm = () => {
      if (current !== "en") chartLocale(current);
      for (const file of (window.genaiServed || {}).warm || []) {
        const url = gradioChunk(file);
        if (url) import(url).catch(() => {});
      }
    };
    if (window.requestIdleCallback) window.requestIdleCallback(warm, { timeout: 3000 }); else setTimeout(warm, 1500);
    return [lang, initialPresentation()];
  }

  window.genaiHeader = { initialLang, setLang, setPresentation, initialPresentation, revealSecret, start,
                         chartLocale: () => chartDone, current: () => current };
})();
