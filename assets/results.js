// A failed run never leaves the previous result looking new. Gradio marks each output of a failed
// event with a short-lived "Error" badge over its old value; here each result area of that event
// is greyed out and labelled "previous result: the last run failed" until a new run writes to it.
(() => {
  const TRACKER = '[data-testid="status-tracker"]';
  const RESULT_MIN_HEIGHT = 48;   // result areas only: not a one-line header or stats line

  function block(tracker) {
    return tracker.parentElement && tracker.parentElement.closest(".block");
  }

  function failed(tracker) {
    return !!tracker.querySelector(".error") && !tracker.classList.contains("hide");
  }

  function running(tracker) {
    return !tracker.classList.contains("hide") && !tracker.querySelector(".error");
  }

  function update(tracker) {
    const area = block(tracker);
    if (!area) return;
    if (failed(tracker)) {
      if (area.classList.contains("genai-stale")) return;
      area.classList.add("genai-stale");
      if (area.offsetHeight >= RESULT_MIN_HEIGHT && window.genaiBoot) {
        area.dataset.stale = window.genaiBoot.text("stale");
      }
    } else if (running(tracker) && area.classList.contains("genai-stale")) {
      area.classList.remove("genai-stale");            // a new run writes here: it is current again
      delete area.dataset.stale;
    }
  }

  new MutationObserver((records) => {
    const seen = new Set();
    for (const record of records) {
      const target = record.target;
      if (target.nodeType !== Node.ELEMENT_NODE) continue;
      const tracker = target.matches(TRACKER) ? target : target.closest(TRACKER);
      if (tracker) seen.add(tracker);
      for (const node of record.addedNodes) {
        if (node.nodeType !== Node.ELEMENT_NODE) continue;
        if (node.matches(TRACKER)) seen.add(node);
        else node.querySelectorAll(TRACKER).forEach((t) => seen.add(t));
      }
    }
    seen.forEach(update);
  }).observe(document.documentElement, { subtree: true, childList: true, attributes: true, attributeFilter: ["class"] });
})();
