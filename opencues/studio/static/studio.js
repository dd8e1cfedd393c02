// opencues Studio: theme toggle, confirmations, live job progress and the live journal.
// No framework and no build step: progressive enhancement over server-rendered pages.
(function () {
  "use strict";
  var root = document.documentElement;
  var saved = localStorage.getItem("opencues-theme");
  if (saved) root.setAttribute("data-theme", saved);

  function ready(fn) { if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn); }

  function text(tag, content, cls) { var el = document.createElement(tag); el.textContent = content; if (cls) el.className = cls; return el; }

  function pollJob(box) {
    var url = box.getAttribute("data-status-url");
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (job) {
          var status = document.getElementById("job-status");
          status.textContent = job.status; status.className = "state state-" + job.status;
          box.setAttribute("data-status", job.status);
          var events = document.getElementById("job-events"); events.textContent = "";
          job.events.forEach(function (e) {
            var li = document.createElement("li");
            li.appendChild(text("strong", e.name)); li.appendChild(document.createTextNode(" "));
            li.appendChild(text("time", e.timestamp)); li.appendChild(document.createTextNode(" "));
            li.appendChild(text("code", JSON.stringify(e.attributes)));
            events.appendChild(li);
          });
          var links = document.getElementById("job-links");
          if (job.links.length) {
            links.textContent = "";
            job.links.forEach(function (href) { var li = document.createElement("li"); var a = text("a", href); a.href = href; li.appendChild(a); links.appendChild(li); });
          }
          var errors = document.getElementById("job-errors");
          if (job.error_samples.length) {
            errors.textContent = "";
            job.error_samples.forEach(function (s) { var li = document.createElement("li"); li.appendChild(text("code", JSON.stringify(s))); errors.appendChild(li); });
          }
          if (job.status === "IN_PROGRESS") { setTimeout(tick, 1000); }
          else { var p = document.getElementById("job-progress"); p.max = 1; p.value = 1; }
        })
        .catch(function () { setTimeout(tick, 3000); });
    }
    if (box.getAttribute("data-status") === "IN_PROGRESS") setTimeout(tick, 500);
  }

  function pollJournal(table) {
    var url = table.getAttribute("data-journal-url");
    function tick() {
      fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (rows) {
        var body = table.tBodies[0]; body.textContent = "";
        rows.forEach(function (r) {
          var tr = document.createElement("tr");
          [r.time, r.method, r.path, r.status, r.duration_ms].forEach(function (v, i) {
            var td = document.createElement("td"); td.appendChild(i === 2 ? text("code", v) : document.createTextNode(v)); tr.appendChild(td);
          });
          body.appendChild(tr);
        });
        setTimeout(tick, 2000);
      }).catch(function () { setTimeout(tick, 5000); });
    }
    setTimeout(tick, 2000);
  }

  ready(function () {
    var toggle = document.getElementById("theme-toggle");
    if (toggle) toggle.addEventListener("click", function () {
      var dark = root.getAttribute("data-theme") ? root.getAttribute("data-theme") === "dark"
        : window.matchMedia("(prefers-color-scheme: dark)").matches;
      var next = dark ? "light" : "dark";
      root.setAttribute("data-theme", next); localStorage.setItem("opencues-theme", next);
    });
    document.querySelectorAll("[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) { if (!window.confirm(button.getAttribute("data-confirm"))) event.preventDefault(); });
    });
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
    var job = document.getElementById("job"); if (job) pollJob(job);
    var journal = document.getElementById("journal"); if (journal) pollJournal(journal);
  });
})();
