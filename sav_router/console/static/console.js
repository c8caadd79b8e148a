// sav-router console: keyboard shortcuts, label search, lease renewal, new-work check, busy buttons.
// Served by the app itself (CSP script-src 'self'); every page works without it.
(function () {
  "use strict";
  var body = document.body;
  var search = document.getElementById("label-search");
  var result = document.getElementById("search-result");
  var help = document.getElementById("help");
  var item = document.querySelector("article.item[data-renew]");
  var empty = document.querySelector("section.empty[data-status]");
  var busy = false;

  function shortcutsOn() { return body.getAttribute("data-shortcuts") !== "off"; }

  function visibleOptions() {
    return Array.prototype.filter.call(document.querySelectorAll(".label-option"), function (b) { return !b.hidden; });
  }

  function submitWith(button) {
    if (busy || !button) return;
    busy = true;  // one answer per page: a double key press never answers the next request
    button.classList.add("pressed");
    button.click();
  }

  // -- label search: says how many match; Enter picks only an unambiguous one ------------
  if (search) {
    var total = document.querySelectorAll(".label-option").length;
    search.addEventListener("input", function () {
      var q = search.value.trim().toLowerCase();
      document.querySelectorAll(".label-option").forEach(function (b) {
        b.hidden = q !== "" && b.getAttribute("data-label").indexOf(q) === -1 && (b.getAttribute("data-desc") || "").indexOf(q) === -1;
      });
      var shown = visibleOptions();
      if (!result) return;
      if (q === "") result.textContent = "";
      else if (shown.length === 0) result.textContent = "No label matches \u201c" + search.value.trim() + "\u201d: try fewer letters, or press o for out of scope.";
      else if (shown.length === 1) result.textContent = "One match: " + shown[0].value + ". Enter saves it.";
      else result.textContent = shown.length + " of " + total + " labels match: type more, or click one.";
    });
    search.addEventListener("keydown", function (e) {
      if (e.key === "Enter") {
        e.preventDefault();
        var shown = visibleOptions(), q = search.value.trim().toLowerCase();
        var exact = shown.filter(function (b) { return b.getAttribute("data-label") === q; });
        if (exact.length === 1) submitWith(exact[0]);
        else if (shown.length === 1) submitWith(shown[0]);
        else if (result) result.textContent = shown.length ? shown.length + " labels match: Enter saves only when one is left." : "No label matches: nothing saved.";
      }
      if (e.key === "Escape") { search.value = ""; search.dispatchEvent(new Event("input")); search.blur(); }
    });
  }

  // -- single-key shortcuts (switchable per user: Keys > switch off) ---------------------
  document.addEventListener("keydown", function (e) {
    if (!shortcutsOn() || e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && t.matches && t.matches("input, textarea, select, summary")) return;
    if (e.key === "/" && search) { e.preventDefault(); search.focus(); return; }
    if (e.key === "?" && help) { e.preventDefault(); help.open = !help.open; return; }
    var button = document.querySelector('[data-key="' + e.key + '"]');
    if (button) { e.preventDefault(); submitWith(button); }
  });

  // -- focus: the request just shown, so the answers are the next tab stops -------------
  var text = document.getElementById("request-text");
  if (text && !(document.activeElement && document.activeElement.matches("input"))) text.focus({ preventScroll: true });
  if (text && window.innerWidth < 700) window.scrollTo(0, 0);

  // -- lease renewal while the request is on screen and the page visible -----------------
  if (item && window.fetch) {
    var lease = parseInt(item.getAttribute("data-lease"), 10) || 900;
    var every = Math.max(2, Math.min(120, lease / 3)) * 1000;
    var timer = null;
    var renew = function () {
      if (document.visibilityState !== "visible") return;
      var form = new URLSearchParams({ csrf: item.getAttribute("data-csrf"), item_id: item.getAttribute("data-item") });
      fetch(item.getAttribute("data-renew"), { method: "POST", body: form, credentials: "same-origin", headers: { "Content-Type": "application/x-www-form-urlencoded" } })
        .then(function (r) { return r.ok ? r.json() : { held: r.status === 401 ? false : true }; })
        .then(function (d) { if (d && d.held === false) { var lost = document.getElementById("lease-lost"); if (lost) lost.hidden = false; stop(); } })
        .catch(function () {});
    };
    var start = function () { if (!timer) timer = setInterval(renew, every); };
    var stop = function () { if (timer) { clearInterval(timer); timer = null; } };
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") { renew(); start(); } else { stop(); }  // no polling once hidden
    });
    if (document.visibilityState === "visible") start();
  }

  // -- an empty queue notices new work -------------------------------------------------
  if (empty && window.fetch) {
    var poll = null;
    var check = function () {
      if (document.visibilityState !== "visible") return;
      fetch(empty.getAttribute("data-status"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) { if (d && d.waiting > 0) window.location.reload(); })
        .catch(function () {});
    };
    var begin = function () { if (!poll) poll = setInterval(check, 20000); };
    var end = function () { if (poll) { clearInterval(poll); poll = null; } };
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") { check(); begin(); } else { end(); }
    });
    if (document.visibilityState === "visible") begin();
  }

  // -- long actions: the button is disabled and says what is happening -----------------
  document.querySelectorAll("form[data-busy]").forEach(function (form) {
    form.addEventListener("submit", function () {
      var button = form.querySelector("button[type=submit]");
      var note = document.createElement("p");
      note.className = "progress";
      note.setAttribute("role", "status");
      note.textContent = form.getAttribute("data-busy");
      form.appendChild(note);
      if (button) setTimeout(function () { button.disabled = true; button.setAttribute("aria-busy", "true"); }, 0);
    });
  });
})();
