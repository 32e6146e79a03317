// Dashboard behaviour on top of htmx (no inline scripts: the CSP allows only files from 'self').
(function () {
  "use strict";

  // After a swap, move focus to a confirmation so keyboard and screen-reader users hear it.
  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail.elt;
    var focusable = target && target.querySelector ? target.querySelector("[data-focus]") : null;
    if (focusable) { focusable.focus(); }
  });

  // Errors htmx does not swap (403, 404, 500, network): say so in the flash area.
  function showProblem(text) {
    var flash = document.getElementById("flash");
    if (!flash) { return; }
    var notice = document.createElement("p");
    notice.className = "notice problem";
    notice.setAttribute("role", "alert");
    notice.textContent = text;
    flash.replaceChildren(notice);
  }

  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    var messages = {
      400: "The form expired. Reload the page and try again.",
      403: "Your role does not allow this action.",
      404: "Not found: it may have been removed."
    };
    showProblem(messages[status] || "The server could not complete this (" + status + "). Retrying the same form is safe: it never posts twice.");
  });

  document.addEventListener("htmx:sendError", function () {
    showProblem("Network error: the request did not reach the server. Retrying the same form is safe.");
  });
})();
