// Masnaa portal: the only script. Two small jobs, no framework:
// 1. the job form checks fields while the user types (same rules as submit);
// 2. the job page follows its logs and reloads when the job's state changes.
(function () {
  "use strict";
  var form = document.getElementById("job-form");
  if (form) {
    var timer = null, seq = 0;
    var show = function (errors) {
      form.querySelectorAll("[data-field]").forEach(function (box) {
        var name = box.getAttribute("data-field");
        var input = box.querySelector("input,select");
        var out = document.getElementById("f-" + name + "-error");
        var message = errors[name] || "";
        if (out.textContent !== message) { out.textContent = message; }
        box.classList.toggle("invalid", !!message);
        if (message) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); }
      });
    };
    var check = function () {
      var mine = ++seq;
      var token = form.querySelector("input[name=csrf_token]").value;
      fetch(form.getAttribute("data-validate"), {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "X-CSRF-Token": token, "Accept": "application/json" }
      }).then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) { if (body && mine === seq) { show(body.errors || {}); form.setAttribute("data-checked", String(mine)); } })
        .catch(function () { /* offline: the server checks again on submit */ });
    };
    var later = function () { clearTimeout(timer); timer = setTimeout(check, 300); };
    form.addEventListener("input", later);
    form.addEventListener("change", later);
  }

  var job = document.getElementById("job");
  if (job) {
    var id = job.getAttribute("data-id"), state = job.getAttribute("data-state");
    var ended = job.getAttribute("data-terminal") === "yes";
    var offsets = { stdout: 0, stderr: 0 }, done = { stdout: false, stderr: false };
    var runs = { stdout: 0, stderr: 0 };  // the run each stream reads: 0 until the job has run
    var gone = { stdout: false, stderr: false };  // the run before this one could not be read
    var pull = function (stream) {
      if (done[stream]) { return Promise.resolve(); }
      var log = document.getElementById("log-" + stream);
      var url = "/jobs/" + id + "/logs.json?stream=" + stream + "&offset=" + offsets[stream];
      if (runs[stream]) { url += "&run=" + runs[stream]; }
      return fetch(url, { credentials: "same-origin" })
        .then(function (r) {
          if (r.ok) { return r.json(); }
          if (r.status === 404 && runs[stream]) {
            // A pinned run cannot be read (its site keeps only the latest run's logs,
            // or its files were deleted): go on with the next run, if there is one.
            gone[stream] = true; runs[stream] += 1; offsets[stream] = 0;
          } else if (r.status === 404 || (r.status === 400 && gone[stream])) {
            // No run after it: say that its output is gone, and stop asking.
            var said = job.getAttribute("data-log-gone");
            log.appendChild(document.createTextNode((log.textContent ? "\n" : "") + said + "\n"));
            done[stream] = true;
          }
          return null;
        })
        .then(function (c) {
          if (!c) { return; }
          gone[stream] = false;
          if (c.data) { log.appendChild(document.createTextNode(c.data)); }
          offsets[stream] = c.next_offset;
          if (c.run) { runs[stream] = c.run; }
          if (c.complete && c.runs > c.run) {
            // The job runs again (requeued): its next run writes files of its own.
            runs[stream] = c.run + 1;
            offsets[stream] = 0;
            var said = job.getAttribute("data-run-started").replace("{run}", runs[stream]);
            log.appendChild(document.createTextNode("\n--- " + said + " ---\n"));
            return;
          }
          done[stream] = c.complete;
        });
    };
    var tick = function () {
      Promise.all([pull("stdout"), pull("stderr")]).then(function () {
        if (ended) { return; }
        return fetch("/jobs/" + id + "/state.json", { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(function (s) { if (s && s.state !== state) { window.location.reload(); } });
      }).finally(function () {
        if (!(ended && done.stdout && done.stderr)) { setTimeout(tick, 2000); }
      });
    };
    tick();
  }
})();
