// Builder: start a session. Files are dropped on the page or chosen with the file input (each
// becomes a source named after it; the name can be changed), registered sources are ticked,
// and everything is uploaded with a progress bar per file. "Edit in builder" (a recipe
// given) asks for one file per file source of the recipe instead. Errors the API names go
// next to the file they are about.
import { csrfHeaders, el, errorMessage } from "./api.js";

const form = document.getElementById("start-session");
const ALIAS = /^[A-Za-z_][A-Za-z0-9_]*$/;

// The same rule as the server's (kalla.agent.builder.alias_for): the file's stem as a
// lower-case SQL identifier, unique among the names taken.
export function aliasFor(filename, taken) {
  let stem = filename.split(/[\\/]/).pop();
  const dot = stem.indexOf(".");
  if (dot > 0) stem = stem.slice(0, dot);
  let alias = stem.replace(/[^A-Za-z0-9_]+/g, "_").replace(/^_+|_+$/g, "").toLowerCase() || "source";
  if (/^[0-9]/.test(alias)) alias = `s_${alias}`;
  let candidate = alias;
  for (let n = 2; taken.has(candidate); n += 1) candidate = `${alias}_${n}`;
  return candidate;
}

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function say(box, message, problems = []) {
  if (!box) return;
  box.replaceChildren(el("p", { text: message }));
  if (problems.length) box.append(el("ul", {}, problems.map((p) => el("li", { text: p }))));
}

// --- the files of the form: fixed aliases (editing a recipe) or a list that grows ----------

class FixedFiles {
  constructor(root) {
    this.inputs = [...root.querySelectorAll("input[type=file][data-alias]")];
    for (const input of this.inputs) {
      const box = input.closest("fieldset");
      droppable(box, (files) => {
        const transfer = new DataTransfer();
        transfer.items.add(files[0]);
        input.files = transfer.files;
        input.dispatchEvent(new Event("change"));
      });
      input.addEventListener("change", () => this.clear(input.dataset.alias));
    }
  }

  entries() {
    return this.inputs.map((input) => ({ alias: input.dataset.alias, file: input.files[0] ?? null }));
  }

  errorBox(alias) {
    return document.getElementById(`error-${alias}`);
  }

  control(alias) {
    return document.getElementById(`file-${alias}`);
  }

  bar(alias) {
    return document.getElementById(`progress-${alias}`);
  }

  clear(alias) {
    this.errorBox(alias)?.replaceChildren();
    this.control(alias)?.removeAttribute("aria-invalid");
  }

  check() {
    let ok = true;
    for (const { alias, file } of this.entries()) {
      if (!file) {
        this.fail(alias, `Choose the file for ${alias}.`);
        ok = false;
      }
    }
    return ok;
  }

  fail(alias, message, problems = []) {
    say(this.errorBox(alias), message, problems);
    this.control(alias)?.setAttribute("aria-invalid", "true");
  }
}

class GrowingFiles {
  constructor(root) {
    this.list = document.getElementById("file-list");
    this.input = document.getElementById("files");
    this.items = []; // {file, id, row, aliasInput}
    this.counter = 0;
    this.input.addEventListener("change", () => {
      this.add([...this.input.files]);
      this.input.value = ""; // the list below holds them; the same file can be added again
    });
    droppable(document.getElementById("dropzone"), (files) => this.add(files));
    this.root = root;
  }

  add(files) {
    for (const file of files) {
      const taken = new Set(this.items.map((item) => item.aliasInput.value));
      const id = `f${(this.counter += 1)}`;
      const aliasInput = el("input", {
        type: "text",
        id: `alias-${id}`,
        value: aliasFor(file.name, taken),
        spellcheck: "false",
        autocomplete: "off",
        "aria-describedby": `error-${id}`,
      });
      const remove = el("button", {
        type: "button",
        class: "secondary small",
        "aria-label": `Remove ${file.name}`,
        text: "Remove",
      });
      const row = el(
        "li",
        { class: "file-item", id: `item-${id}` },
        el("span", { class: "file-name" }, el("strong", { text: file.name }), " ", el("span", { class: "muted", text: size(file.size) })),
        el("label", { for: `alias-${id}`, text: "Name in the recipe" }),
        aliasInput,
        remove,
        el("progress", { id: `progress-${id}`, class: "upload", max: "1", value: "0", hidden: true, "aria-label": `Upload of ${file.name}` }),
        el("div", { id: `error-${id}`, class: "field-error", role: "alert" }),
      );
      const item = { file, id, row, aliasInput };
      remove.addEventListener("click", () => {
        this.items = this.items.filter((other) => other !== item);
        row.remove();
        this.input.focus();
      });
      aliasInput.addEventListener("input", () => this.clear(aliasInput.value));
      this.items.push(item);
      this.list.append(row);
    }
  }

  entries() {
    return this.items.map((item) => ({ alias: item.aliasInput.value.trim(), file: item.file }));
  }

  find(alias) {
    return this.items.find((item) => item.aliasInput.value.trim() === alias);
  }

  errorBox(alias) {
    const item = this.find(alias);
    return item ? document.getElementById(`error-${item.id}`) : null;
  }

  control(alias) {
    return this.find(alias)?.aliasInput ?? null;
  }

  bar(alias) {
    const item = this.find(alias);
    return item ? document.getElementById(`progress-${item.id}`) : null;
  }

  clear() {
    for (const item of this.items) {
      document.getElementById(`error-${item.id}`)?.replaceChildren();
      item.aliasInput.removeAttribute("aria-invalid");
    }
  }

  check() {
    let ok = true;
    const seen = new Set();
    for (const item of this.items) {
      const alias = item.aliasInput.value.trim();
      const box = document.getElementById(`error-${item.id}`);
      let problem = null;
      if (!ALIAS.test(alias)) {
        problem = `Name ${item.file.name} with letters, digits and _ (not starting with a digit): the recipe's SQL uses it.`;
      } else if (seen.has(alias)) {
        problem = `Two sources are named '${alias}': give each its own name.`;
      }
      seen.add(alias);
      if (problem) {
        say(box, problem);
        item.aliasInput.setAttribute("aria-invalid", "true");
        ok = false;
      }
    }
    return ok;
  }

  fail(alias, message, problems = []) {
    say(this.errorBox(alias), message, problems);
    this.control(alias)?.setAttribute("aria-invalid", "true");
  }
}

// Dropping files on `zone` hands them to `take`; the browser would otherwise open them.
function droppable(zone, take) {
  if (!zone) return;
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const files = [...(event.dataTransfer?.files ?? [])];
    if (files.length) take(files);
  });
}

// --- sending -------------------------------------------------------------------------------

function aliasOf(text, aliases) {
  return aliases.find((alias) => text.includes(`'${alias}'`)) ?? null;
}

function showError(files, body, status) {
  const { message, problems } = errorMessage(body, status);
  const aliases = files.entries().map((entry) => entry.alias);
  const general = document.getElementById("form-error");
  const byAlias = new Map();
  for (const problem of problems) {
    const alias = aliasOf(problem, aliases);
    if (!byAlias.has(alias)) byAlias.set(alias, []);
    byAlias.get(alias).push(problem);
  }
  const named = problems.length ? null : aliasOf(message, aliases);
  if (named) {
    files.fail(named, message);
  } else if (problems.length && !byAlias.has(null)) {
    for (const [alias, list] of byAlias) files.fail(alias, message, list);
  } else {
    say(general, message, problems);
  }
  (form.querySelector("[aria-invalid=true]") ?? general)?.focus?.();
}

if (form) {
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  const files = form.dataset.recipe ? new FixedFiles(form) : new GrowingFiles(form);
  const button = document.getElementById("start");
  const label = button.textContent;
  const maxUpload = Number(form.dataset.maxUpload);
  const general = document.getElementById("form-error");
  general.tabIndex = -1;

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    files.clear();
    general.replaceChildren();
    if (!files.check()) {
      form.querySelector("[aria-invalid=true]")?.focus();
      return;
    }
    const entries = files.entries().filter((entry) => entry.file);
    for (const { alias, file } of entries) {
      if (maxUpload && file.size > maxUpload) {
        files.fail(alias, `${file.name} is larger than this app accepts (${size(maxUpload)}, KALLA_MAX_UPLOAD_SIZE).`);
      }
    }
    if (form.querySelector("[aria-invalid=true]")) {
      form.querySelector("[aria-invalid=true]").focus();
      return;
    }
    const picked = [...form.querySelectorAll("input[name=sources]:checked")].map((box) => box.value);
    if (!form.dataset.recipe) {
      const total = entries.length + picked.length;
      const builder = form.dataset.mode === "builder";
      if (total < 2 || (builder && total !== 2)) {
        say(
          general,
          builder
            ? `Kalla's builder matches two sources: add two files or pick two registered sources (now ${total}).`
            : `Give at least two sources: add files or pick registered sources (now ${total}).`,
        );
        general.focus();
        return;
      }
    }

    const data = new FormData();
    if (form.dataset.recipe) {
      data.append("recipe_id", form.dataset.recipe);
      data.append("version", form.dataset.version);
    } else {
      const title = document.getElementById("title").value.trim();
      if (title) data.append("title", title);
      if (picked.length) data.append("sources", picked.join(","));
    }
    for (const { alias, file } of entries) data.append(alias, file, file.name);

    const bars = entries.map((entry) => files.bar(entry.alias));
    for (const bar of bars) {
      if (bar) {
        bar.hidden = false;
        bar.value = 0;
      }
    }
    button.disabled = true;
    button.textContent = entries.length ? "Uploading…" : "Starting…";

    // XMLHttpRequest, not fetch: only it reports upload progress.
    const request = new XMLHttpRequest();
    request.open("POST", "/api/agent/sessions");
    for (const [name, value] of Object.entries(csrfHeaders())) request.setRequestHeader(name, value);
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", (e) => {
      let before = 0; // parts are sent in order: each file's share of the bytes sent so far
      entries.forEach((entry, i) => {
        const done = Math.min(Math.max(e.loaded - before, 0), entry.file.size);
        if (bars[i]) bars[i].value = entry.file.size ? done / entry.file.size : 1;
        before += entry.file.size;
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
      if (request.status === 201 && body && body.id) {
        window.location.assign(`/builder/${body.id}`);
        return;
      }
      button.disabled = false;
      button.textContent = label;
      for (const bar of bars) if (bar) bar.hidden = true;
      showError(files, body, request.status);
    });
    request.addEventListener("error", () => {
      button.disabled = false;
      button.textContent = label;
      say(general, "The app could not be reached: check that kalla serve is running, then try again.");
    });
    request.send(data);
  });
}
