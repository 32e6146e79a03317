// The header lookup as an ARIA combobox with a listbox popup: ArrowDown/ArrowUp move through
// the results (focus stays in the box, aria-activedescendant names the active one), Enter
// opens it, Escape closes the list and, pressed again, clears the box. The roles are set here:
// without JavaScript the box is a plain search form and the results (if any) plain links.
(function () {
  "use strict";

  var input = document.getElementById("lookup-q");
  var popup = document.getElementById("lookup-results");
  if (!input || !popup) { return; }
  var form = input.form;
  var active = -1;

  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-expanded", "false");
  input.setAttribute("aria-controls", popup.id);

  function options() {
    return Array.prototype.slice.call(popup.querySelectorAll("[role=option]"));
  }

  // Each result's first link becomes an option; a list without one ("Nothing matches") stays
  // a plain list, announced by the live region around it.
  function enhance() {
    var list = popup.querySelector("ul");
    var count = 0;
    active = -1;
    input.removeAttribute("aria-activedescendant");
    if (!list) { setOpen(false); return; }
    Array.prototype.forEach.call(list.children, function (item) {
      var link = item.querySelector("a[href]");
      if (!link) { return; }
      item.setAttribute("role", "none");
      link.setAttribute("role", "option");
      link.setAttribute("aria-selected", "false");
      link.id = "lookup-option-" + count;
      count += 1;
    });
    if (count) {
      list.setAttribute("role", "listbox");
      list.setAttribute("aria-label", "Lookup results");
    }
    setOpen(count > 0);
    show(true);
  }

  function show(visible) {
    popup.classList.toggle("closed", !visible);
  }

  function setOpen(open) {
    input.setAttribute("aria-expanded", open ? "true" : "false");
    show(open);
    if (!open) { choose(-1); }
  }

  function choose(index) {
    var all = options();
    all.forEach(function (option, n) {
      option.setAttribute("aria-selected", n === index ? "true" : "false");
      option.parentNode.classList.toggle("active", n === index);
    });
    active = index;
    if (index < 0 || !all[index]) {
      input.removeAttribute("aria-activedescendant");
      return;
    }
    input.setAttribute("aria-activedescendant", all[index].id);
    all[index].scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    var count = options().length;
    if (!count) { return; }
    if (input.getAttribute("aria-expanded") !== "true") {
      setOpen(true);
    }
    choose(active < 0 ? (step > 0 ? 0 : count - 1) : (active + step + count) % count);
  }

  function clear() {
    input.value = "";
    popup.replaceChildren();
    setOpen(false);
  }

  input.addEventListener("keydown", function (event) {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      move(1);
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      move(-1);
    } else if (event.key === "Enter" && active >= 0) {
      event.preventDefault();
      options()[active].click();
    } else if (event.key === "Escape") {
      event.preventDefault();
      if (input.getAttribute("aria-expanded") === "true") { setOpen(false); } else { clear(); }
    }
  });

  // Typing starts a new search: nothing is active until an arrow key says so.
  input.addEventListener("input", function () { choose(-1); });

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target === popup) { enhance(); }
  });

  // Leaving the lookup (Tab past its results, a click elsewhere) closes the list; coming
  // back to the box opens it again.
  form.addEventListener("focusout", function (event) {
    if (!form.contains(event.relatedTarget)) { setOpen(false); }
  });
  input.addEventListener("focus", function () {
    if (options().length) { setOpen(true); } else { show(true); }
  });
})();
