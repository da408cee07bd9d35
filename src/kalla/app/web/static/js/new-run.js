// New run: upload the file sources with progress, start the run, then follow it live.
// Errors the API names (a missing column, a wrong file type) are shown next to the file.
import { placeError, sendFiles } from "./upload.js";

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

function showError(body, status, aliases) {
  placeError(body, status, aliases, fieldError, (message, problems) => fieldError(null, message, problems));
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

    sendFiles("/api/runs", data, {
      sizes: inputs.map((input) => input.files[0].size),
      bars: inputs.map((input) => document.getElementById(`progress-${input.dataset.alias}`)),
      button,
      busy: "Uploading…",
      created: 202,
      next: (id) => `/runs/${id}`,
      failed: (body, status) => showError(body, status, aliases),
      unreachable: () =>
        fieldError(null, "The app could not be reached: check that kalla serve is running, then try again."),
    });
  });

  for (const input of inputs) input.addEventListener("change", () => {
    document.getElementById(`error-${input.dataset.alias}`)?.replaceChildren();
    input.removeAttribute("aria-invalid");
  });
}
