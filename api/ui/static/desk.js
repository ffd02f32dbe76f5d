// Live progress on the run page: one EventSource on /workflow/{id}/events updates the status,
// the step, the messages and the artifacts without a reload. The page works without it.
(function () {
  "use strict";
  var run = document.getElementById("run");
  if (!run || !window.EventSource) return;
  if (run.dataset.status && ["completed", "failed", "cancelled", "timed_out"].indexOf(run.dataset.status) >= 0) return;

  var shownVersion = run.dataset.edaVersion;
  var source = new EventSource(run.dataset.eventsUrl);
  var live = run.querySelector("[data-testid=live]");

  function field(name) { return run.querySelector("[data-field=" + name + "]"); }
  function words(value) { return String(value || "").replace(/_/g, " "); }

  source.addEventListener("open", function () { live.hidden = false; });
  source.addEventListener("error", function () { live.hidden = true; });

  source.addEventListener("status", function (event) {
    var status = JSON.parse(event.data);
    var badge = field("status");
    badge.textContent = words(status.status);
    badge.className = "badge status-" + status.status;
    run.dataset.status = status.status;
    field("current_step").textContent = words(status.current_step);
    field("updated_at").textContent = status.updated_at.replace("T", " ").slice(0, 19) + " UTC";
    var error = field("last_error");
    error.textContent = status.last_error || "";
    error.hidden = !status.last_error;
    var steps = run.querySelectorAll("[data-step]");
    var reached = false;
    for (var i = steps.length - 1; i >= 0; i--) {
      var step = steps[i];
      var current = step.dataset.step === status.current_step;
      step.className = status.status === "completed" || reached ? "done" : current ? "current" : "";
      if (current) reached = true;
    }
    document.getElementById("unavailable").hidden = true;
    var decision = run.querySelector("[data-testid=decision]");
    if (decision && status.status !== "awaiting_approval") decision.hidden = true;
    var fresh = status.status === "awaiting_approval" && String(status.eda_version) !== shownVersion;
    document.getElementById("fresh-version").hidden = !fresh;
  });

  source.addEventListener("message", function (event) {
    var message = JSON.parse(event.data);
    var list = document.getElementById("messages");
    if (list.querySelector('[data-index="' + message.index + '"]')) return;
    var item = document.createElement("li");
    item.dataset.index = message.index;
    item.className = message.role;
    var time = document.createElement("time");
    time.textContent = message.at.slice(11, 19);
    var step = document.createElement("span");
    step.className = "step";
    step.textContent = words(message.step);
    item.append(time, " ", step, " ", message.content);
    list.appendChild(item);
  });

  source.addEventListener("artifacts", function (event) {
    var update = JSON.parse(event.data);
    var list = document.getElementById("artifact-list");
    update.artifacts.forEach(function (artifact) {
      if (list.querySelector('[data-name="' + CSS.escape(artifact.name) + '"]')) return;
      var item = document.createElement("li");
      item.dataset.name = artifact.name;
      var link = document.createElement("a");
      link.href = run.dataset.artifactBase + artifact.name.split("/").map(encodeURIComponent).join("/");
      link.textContent = artifact.name;
      var size = document.createElement("small");
      size.textContent = artifact.size_bytes + " bytes";
      item.append(link, " ", size);
      list.appendChild(item);
    });
    field("artifact_count").textContent = "(" + update.artifacts.length + ")";
  });

  source.addEventListener("unavailable", function (event) {
    var notice = document.getElementById("unavailable");
    notice.textContent = JSON.parse(event.data).detail;
    notice.hidden = false;
  });

  source.addEventListener("end", function (event) {
    source.close();  // otherwise the browser reconnects to a stream that has nothing more to say
    live.hidden = true;
    field("end_status").textContent = words(JSON.parse(event.data).status);
    document.getElementById("run-ended").hidden = false;
  });
})();
