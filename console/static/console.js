// Masar console: the only script (no inline script: the CSP forbids it).
// - Live parts: an element with data-live="URL" is refreshed from URL every
//   data-every seconds (default 10); the request says X-Masar-Live so it does
//   not count as activity, and an ended session reloads the page.
// - Idle sign-out: after data-idle-seconds without a click or key press the
//   page goes to the sign-in page (the server ends the session too).
// - Confirmations: a form with data-confirm asks before it is sent.
(function () {
  "use strict";
  function refresh(el) {
    var url = el.getAttribute("data-live");
    fetch(url, { headers: { "X-Masar-Live": "1" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.headers.get("X-Masar-Reload") === "1") { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) { if (html !== null && html !== undefined) { el.innerHTML = html; } })
      .catch(function () { /* offline for a moment: try again at the next tick */ });
  }
  document.querySelectorAll("[data-live]").forEach(function (el) {
    var every = parseInt(el.getAttribute("data-every") || "10", 10) * 1000;
    window.setInterval(function () { refresh(el); }, every);
  });
  var idle = parseInt(document.body.getAttribute("data-idle-seconds") || "0", 10);
  if (idle > 0) {
    var timer = null;
    var arm = function () {
      if (timer) { window.clearTimeout(timer); }
      timer = window.setTimeout(function () { window.location.assign("/signin?idle=1"); }, (idle + 1) * 1000);
    };
    ["click", "keydown", "input"].forEach(function (ev) { document.addEventListener(ev, arm, true); });
    arm();
  }
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { ev.preventDefault(); }
    });
  });
  // The consent script in the language the survivor speaks: open that one.
  document.querySelectorAll("select[data-script-select]").forEach(function (sel) {
    var show = function () {
      document.querySelectorAll("details[data-script]").forEach(function (d) {
        d.open = d.getAttribute("data-script") === sel.value;
      });
    };
    sel.addEventListener("change", show);
  });
  document.querySelectorAll("select[data-autosubmit]").forEach(function (sel) {
    sel.addEventListener("change", function () { sel.form.submit(); });
  });
})();
