// Renders the OpenAPI document named by #swagger-ui's data-spec-url (no inline script, no CDN).
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  // No deep links: swagger-ui puts them inside each operation's button (nested controls).
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl, domNode: root, deepLinking: false,
    onComplete: function () {  // its server picker has no label
      var servers = document.getElementById("servers");
      if (servers) { servers.setAttribute("aria-label", "Server"); }
    }
  });
});
