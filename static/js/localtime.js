// Times in the reader's own time zone. The server writes every moment in UTC as
// <time datetime="...Z" title="... UTC">... UTC</time> (the `when` macro in
// templates/_macros/ui.html); this rewrites the text into the browser's time zone, naming the
// zone, and leaves the UTC text in the title for hover. Without JavaScript the UTC text stays.
// Filters and exports stay in UTC.
(function () {
  "use strict";

  var format = new Intl.DateTimeFormat("en-US", {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hourCycle: "h23", timeZoneName: "short"
  });

  // "2026-11-27 05:58:23 GMT+1": the same shape as the UTC text, so the two read alike.
  function local(moment) {
    var parts = {};
    format.formatToParts(moment).forEach(function (part) { parts[part.type] = part.value; });
    return parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" +
      parts.minute + ":" + parts.second + " " + parts.timeZoneName;
  }

  function localize(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (element) {
      var moment = new Date(element.getAttribute("datetime"));
      if (isNaN(moment.getTime())) { return; }
      element.textContent = local(moment);
      element.setAttribute("data-local", "");
    });
  }

  localize(document);
  // Rows and cards htmx swaps in (out-of-band ones too) arrive in UTC: rewrite them as well.
  document.addEventListener("htmx:load", function (event) { localize(event.detail.elt); });
})();
