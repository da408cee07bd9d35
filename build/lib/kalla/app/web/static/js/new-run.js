// New run: upload the file sources with progress, start the run, then follow it live.
// Errors the API names (a missing column, a wrong file type) are shown next to the file.
import { csrfHeaders, errorMessage } from "./api.js";

const form = document.getElementById("start-run");

function fieldError(alias, message, problems = []) {
  const box = document.getElementById(alias ? `error-${alias}` : "form-error");
  if (!box) return false;
  box.replaceChildren();
  const p = document.createElement("p");
  p.textContent = message;
  box.append(p);
  if (problems.length) {
    const ul = document.createElement("ul");
    for (const problem of problems) {
      const li = document.createElement("li");
      li.textContent = problem;
      ul.append(li);
    }
    box.append(ul);
  }
  const input = alias ? document.getElementById(`file-${alias}`) : null;
  input?.setAttribute("aria-invalid", "true");
  return true;
}

function clearErrors() {
  for (const box of form.querySelectorAll(".field-error")) box.replaceChildren();
  for (const input of form.querySelectorAll("input[type=file]")) input.removeAttribute("aria-invalid");
}

// Which file an error is about: the API names the source as 'alias'.
function aliasOf(text, aliases) {
  return aliases.find((alias) => text.includes(`'${alias}'`)) ?? null;
}

function showError(body, status, aliases) {
  const { message, problems } = errorMessage(body, status);
  const named = aliasOf(message, aliases);
  if (named) {
    fieldError(named, message, problems);
    document.getElementById(`file-${named}`)?.focus();
    return;
  }
  const byAlias = new Map();
  for (const problem of problems) {
    const alias = aliasOf(problem, aliases);
    if (!byAlias.has(alias)) byAlias.set(alias, []);
    byAlias.get(alias).push(problem);
  }
  if (problems.length && ![...byAlias.keys()].includes(null)) {
    for (const [alias, list] of byAlias) fieldError(alias, message, list);
  } else {
    fieldError(null, message, problems);
  }
  form.querySelector("[aria-invalid=true]")?.focus();
}

if (form) {
  const inputs = [...form.querySelectorAll("input[type=file]")];
  const aliases = inputs.map((input) => input.dataset.alias);
  const button = document.getElementById("start");
  const maxUpload = Number(form.dataset.maxUpload);

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearErrors();
    let missing = false;
    for (const input of inputs) {
      const file = input.files[0];
      if (!file) {
        fieldError(input.dataset.alias, `Choose the file for ${input.dataset.alias}.`);
        missing = true;
      } else if (maxUpload && file.size > maxUpload) {
        fieldError(input.dataset.alias, `${file.name} is larger than this app accepts (KALLA_MAX_UPLOAD_SIZE).`);
        missing = true;
      }
    }
    if (missing) {
      form.querySelector("[aria-invalid=true]")?.focus();
      return;
    }
    const data = new FormData();
    data.append("recipe_id", form.dataset.recipe);
    data.append("version", form.dataset.version);
    for (const input of inputs) data.append(input.dataset.alias, input.files[0]);

    const sizes = inputs.map((input) => input.files[0].size);
    const bars = inputs.map((input) => document.getElementById(`progress-${input.dataset.alias}`));
    for (const bar of bars) {
      if (bar) { bar.hidden = false; bar.value = 0; }
    }
    button.disabled = true;
    button.textContent = "Uploading…";

    // XMLHttpRequest, not fetch: only it reports upload progress.
    const request = new XMLHttpRequest();
    request.open("POST", "/api/runs");
    for (const [name, value] of Object.entries(csrfHeaders())) request.setRequestHeader(name, value);
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", (e) => {
      // parts are sent in order: each file's share of the bytes sent so far
      let before = 0;
      sizes.forEach((size, i) => {
        const done = Math.min(Math.max(e.loaded - before, 0), size);
        if (bars[i]) bars[i].value = size ? done / size : 1;
        before += size;
      });
    });
    request.upload.addEventListener("load", () => {
      button.textContent = "Checking the files…";
    });
    request.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(request.responseText);
      } catch {
        body = null;
      }
      if (request.status === 202 && body && body.id) {
        window.location.assign(`/runs/${body.id}`);
        return;
      }
      button.disabled = false;
      button.textContent = "Start the run";
      for (const bar of bars) if (bar) bar.hidden = true;
      showError(body, request.status, aliases);
    });
    request.addEventListener("error", () => {
      button.disabled = false;
      button.textContent = "Start the run";
      fieldError(null, "The app could not be reached: check that kalla serve is running, then try again.");
    });
    request.send(data);
  });

  for (const input of inputs) input.addEventListener("change", () => {
    document.getElementById(`error-${input.dataset.alias}`)?.replaceChildren();
    input.removeAttribute("aria-invalid");
  });
}
