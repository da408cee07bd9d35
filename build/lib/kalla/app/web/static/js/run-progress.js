// A run's live progress over Server-Sent Events (EventSource: the server pushes; no polling).
const section = document.getElementById("live-progress");

function setBar(id, value, text) {
  const bar = document.getElementById(id);
  if (bar) {
    bar.value = value;
    bar.textContent = `${Math.round(value * 100)}%`;
  }
  const label = document.getElementById(`${id}-text`);
  if (label) label.textContent = text ?? `${Math.round(value * 100)}%`;
}

function describe(p) {
  if (p.status === "queued") return "Waiting for a free worker…";
  if (p.stage === "staging") {
    const reading = p.sources.filter((s) => !s.done).map((s) => s.alias);
    // the sources are read one after the other: name the one being read now
    return reading.length ? `Reading ${reading[0]}…` : "Sources read; matching next…";
  }
  if (p.stage === "matching") return "Matching…";
  if (p.status === "completed") return "Done. Loading the results…";
  if (p.status === "failed") return `Failed: ${p.error ?? "no reason recorded"}`;
  if (p.status === "cancelled") return `Cancelled: ${p.error ?? ""}`;
  return p.stage;
}

if (section) {
  const runId = section.dataset.run;
  const text = document.getElementById("progress-text");
  const status = document.getElementById("run-status");
  const stream = new EventSource(`/api/runs/${runId}/progress/stream`);
  stream.addEventListener("progress", (event) => {
    const p = JSON.parse(event.data);
    setBar("p-overall", p.progress);
    for (const s of p.sources) setBar(`p-src-${s.side}`, s.progress, s.done ? "done" : null);
    setBar("p-matching", p.matching);
    text.textContent = describe(p);
    if (status) {
      const badge = status.querySelector(".badge");
      if (badge) {
        badge.textContent = p.status;
        badge.className = `badge status-${p.status}`;
      }
    }
  });
  stream.addEventListener("end", () => {
    stream.close();
    // the finished run's page (summary, results, or the error) is rendered by the server
    window.location.reload();
  });
  stream.addEventListener("error", () => {
    if (stream.readyState === EventSource.CLOSED) {
      text.textContent = "Lost the live connection to the app; reload the page to see where the run is.";
    }
  });
}
