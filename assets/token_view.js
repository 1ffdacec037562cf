// Hovering a token highlights the same characters in every tokenizer's view.
document.addEventListener("mouseover", (event) => {
  const tok = event.target.closest ? event.target.closest(".tk, .tkg") : null;
  document.querySelectorAll(".tk.hl, .tkg.hl").forEach((el) => el.classList.remove("hl"));
  if (!tok) return;
  const s = Number(tok.dataset.s), e = Number(tok.dataset.e);
  if (!(s >= 0) || !(e > s)) return;
  document.querySelectorAll(".tokview .tk").forEach((el) => {
    const a = Number(el.dataset.s), b = Number(el.dataset.e);
    if (a >= 0 && a < e && b > s) el.classList.add("hl");
  });
});
