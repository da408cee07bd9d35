// Sending files to the API with a progress bar per file, and showing the errors it names
// next to the file they are about: the builder's start form and the new-run form alike.
import { csrfHeaders, errorMessage } from "./api.js";

// Which source an error is about: the API names a source as 'alias'.
export function aliasOf(text, aliases) {
  return aliases.find((alias) => text.includes(`'${alias}'`)) ?? null;
}

// The API's error, placed: `fail(alias, message, problems)` for a message or problems that
// name a source, `general(message, problems)` for the rest.
export function placeError(body, status, aliases, fail, general) {
  const { message, problems } = errorMessage(body, status);
  const named = aliasOf(message, aliases);
  if (named) {
    fail(named, message, problems);
    return;
  }
  const byAlias = new Map();
  for (const problem of problems) {
    const alias = aliasOf(problem, aliases);
    if (!byAlias.has(alias)) byAlias.set(alias, []);
    byAlias.get(alias).push(problem);
  }
  if (problems.length && !byAlias.has(null)) {
    for (const [alias, list] of byAlias) fail(alias, message, list);
  } else {
    general(message, problems);
  }
}

// Send the form's `data` to `url` with a progress bar per file (`bars[i]` follows the file
// of `sizes[i]` bytes: parts go in order) and `button` saying what happens. On `created`
// with an id, go to `next(id)`; else `failed(body, status)` (body: the JSON reply or null);
// `unreachable()` when no reply came. XMLHttpRequest, not fetch: only it reports upload
// progress.
export function sendFiles(url, data, { sizes, bars, button, busy, created, next, failed, unreachable }) {
  const label = button.textContent;
  const restore = () => {
    button.disabled = false;
    button.textContent = label;
    for (const bar of bars) if (bar) bar.hidden = true;
  };
  for (const bar of bars) {
    if (bar) {
      bar.hidden = false;
      bar.value = 0;
    }
  }
  button.disabled = true;
  button.textContent = busy;
  const request = new XMLHttpRequest();
  request.open("POST", url);
  for (const [name, value] of Object.entries(csrfHeaders())) request.setRequestHeader(name, value);
  request.setRequestHeader("Accept", "application/json");
  request.upload.addEventListener("progress", (e) => {
    let before = 0;
    sizes.forEach((size, i) => {
      const done = Math.min(Math.max(e.loaded - before, 0), size);
      if (bars[i]) bars[i].value = size ? done / size : 1;
      before += size;
    });
  });
  request.upload.addEventListener("load", () => {
    for (const bar of bars) if (bar) bar.value = 1;
    button.textContent = "Checking the files…";
  });
  request.addEventListener("load", () => {
    let body = null;
    try {
      body = JSON.parse(request.responseText);
    } catch {
      body = null;
    }
    if (request.status === created && body && body.id) {
      window.location.assign(next(body.id));
      return;
    }
    restore();
    failed(body, request.status);
  });
  request.addEventListener("error", () => {
    restore();
    unreachable();
  });
  request.send(data);
}
