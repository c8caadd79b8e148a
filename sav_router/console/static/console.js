// sav-router console: keyboard shortcuts, label search, auto-submitting selects.
// Served by the app itself (CSP script-src 'self'); the pages work without it.
(function () {
  "use strict";
  var search = document.getElementById("label-search");
  var help = document.getElementById("help");
  var busy = false;

  function visibleOptions() {
    return Array.prototype.filter.call(document.querySelectorAll(".label-option"), function (b) { return !b.hidden; });
  }

  function submitWith(button) {
    if (busy || !button) return;
    busy = true;  // one answer per page: a double key press never answers the next request
    button.classList.add("pressed");
    button.click();
  }

  if (search) {
    search.addEventListener("input", function () {
      var q = search.value.trim().toLowerCase();
      document.querySelectorAll(".label-option").forEach(function (b) {
        b.hidden = q !== "" && b.getAttribute("data-label").indexOf(q) === -1;
      });
    });
    search.addEventListener("keydown", function (e) {
      if (e.key === "Enter") { e.preventDefault(); submitWith(visibleOptions()[0]); }
      if (e.key === "Escape") { search.value = ""; search.dispatchEvent(new Event("input")); search.blur(); }
    });
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && t.matches && t.matches("input, textarea, select")) return;
    if (e.key === "/" && search) { e.preventDefault(); search.focus(); return; }
    if (e.key === "?" && help) { e.preventDefault(); help.open = !help.open; return; }
    var button = document.querySelector('[data-key="' + e.key + '"]');
    if (button) { e.preventDefault(); submitWith(button); }
  });

  document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
    s.addEventListener("change", function () { s.form.submit(); });
  });
})();
