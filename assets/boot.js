// Runs before anything else on the page: ui/page.py inlines it at the top of <head>, after
// `window.genaiServed` (the language the server rendered the page in, and the texts the page's own
// scripts show). Not one of the `head` scripts app.py hands to Gradio (those run once Gradio is up).
//
// 1. A teacher link's token leaves the address at once (`#teacher=…`, or `?teacher=…` from older
//    links): it is kept here only until the page's first event hands it to the server
//    (ui/share.py), so neither the address bar nor anything on screen ever shows it.
// 2. The page's language: ?lang=, else the last choice (this browser), else the server's (its cookie
//    or the browser's languages). Gradio takes its first locale from the browser's languages, so
//    these say the page's language: Gradio's own texts are right from the first paint.
(() => {
  const LANGS = ["fr", "en"];
  const served = window.genaiServed || {};
  const url = new URL(window.location.href);

  let teacher = "";
  if (url.hash.startsWith("#teacher=")) {
    try { teacher = decodeURIComponent(url.hash.slice("#teacher=".length)); } catch { teacher = ""; }
    url.hash = "";
  }
  if (url.searchParams.has("teacher")) {
    teacher = teacher || url.searchParams.get("teacher") || "";
    url.searchParams.delete("teacher");
  }
  if (url.toString() !== window.location.href) {
    try { window.history.replaceState(window.history.state, "", url); } catch { /* not a normal page URL */ }
  }

  let stored = null;
  try { stored = window.localStorage.getItem("genai_lang"); } catch { stored = null; }
  const browser = ((navigator.languages && navigator.languages[0]) || navigator.language || "en").toLowerCase();
  const lang = served.forced ? served.lang
    : [url.searchParams.get("lang"), stored, served.lang].find((l) => LANGS.includes(l))
      || (browser.startsWith("fr") ? "fr" : "en");
  document.documentElement.setAttribute("lang", lang);
  document.cookie = `genai_lang=${lang}; path=/; max-age=${365 * 24 * 3600}; SameSite=Lax`;
  if (!browser.startsWith(lang)) {
    for (const [name, value] of [["languages", Object.freeze([lang])], ["language", lang]]) {
      try { Object.defineProperty(navigator, name, { get: () => value, configurable: true }); } catch { /* kept */ }
    }
  }

  const strings = served.strings || {};
  window.genaiBoot = {
    lang,
    served: served.lang || null,          // null: the page was not rendered for a language (no middleware)
    forced: !!served.forced,
    takeTeacher() { const token = teacher; teacher = ""; return token; },
    text(key, language) {
      const table = strings[language || document.documentElement.lang] || strings.en || {};
      return table[key] || (strings.en || {})[key] || key;
    },
  };
})();
