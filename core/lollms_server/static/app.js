// lollms-server pages: the little behaviour htmx attributes cannot express.
// A static file, so the pages run under a CSP without inline scripts; no framework.
(function () {
  "use strict";

  // After a successful htmx post, clear the fields marked data-clear (the chat message).
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-clear-on-success")) return;
    if (!event.detail.successful) return;
    form.querySelectorAll("[data-clear]").forEach(function (field) { field.value = ""; });
  });

  // Ctrl+Enter (or Cmd+Enter) in a textarea submits its form.
  document.addEventListener("keydown", function (event) {
    var field = event.target;
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    if (!(field instanceof HTMLTextAreaElement) || !field.form) return;
    event.preventDefault();
    field.form.requestSubmit();
  });

  // Keep the newest streamed text in view.
  document.addEventListener("htmx:sseMessage", function (event) {
    var turn = event.target.closest ? event.target.closest(".turn") : null;
    if (turn && turn === turn.parentElement.lastElementChild) {
      turn.scrollIntoView({ block: "end", behavior: "auto" });
    }
  });
})();
