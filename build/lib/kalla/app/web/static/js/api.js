// The JSON API, as the pages call it: same endpoints as a script, plus the CSRF header.
const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export function csrfHeaders() {
  return { "X-CSRF-Token": csrf };
}

// The API's error body is {error, kind, problems}: one sentence naming the cause.
export function errorMessage(body, status) {
  if (body && typeof body === "object" && body.error) {
    return { message: String(body.error), problems: Array.isArray(body.problems) ? body.problems : [] };
  }
  return { message: `the server answered HTTP ${status}`, problems: [] };
}

export async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = new Error(errorMessage(body, response.status).message);
    error.status = response.status;
    throw error;
  }
  return body;
}

export function formatNumber(value) {
  if (value === null || value === undefined) return "—";
  return Number(value).toLocaleString("en");
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
