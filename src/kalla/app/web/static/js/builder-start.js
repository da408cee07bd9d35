// Builder: start a session. Files are dropped on the page or chosen with the file input (each
// becomes a source named after it; the name can be changed), registered sources are ticked,
// and everything is uploaded with a progress bar per file. "Edit in builder" (a recipe
// given) asks for one file per file source of the recipe instead. Errors the API names go
// next to the file they are about.
import { el } from "./api.js";
import { placeError, sendFiles } from "./upload.js";

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

function showError(files, body, status) {
  const aliases = files.entries().map((entry) => entry.alias);
  const general = document.getElementById("form-error");
  placeError(body, status, aliases, (alias, message, problems) => files.fail(alias, message, problems), (message, problems) => say(general, message, problems));
  (form.querySelector("[aria-invalid=true]") ?? general)?.focus?.();
}

if (form) {
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  const files = form.dataset.recipe ? new FixedFiles(form) : new GrowingFiles(form);
  const button = document.getElementById("start");
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

    sendFiles("/api/agent/sessions", data, {
      sizes: entries.map((entry) => entry.file.size),
      bars: entries.map((entry) => files.bar(entry.alias)),
      button,
      busy: entries.length ? "Uploading…" : "Starting…",
      created: 201,
      next: (id) => `/builder/${id}`,
      failed: (body, status) => showError(files, body, status),
      unreachable: () => say(general, "The app could not be reached: check that kalla serve is running, then try again."),
    });
  });
}
