// What a builder turn shows besides text: a line per tool the assistant (or builder) runs,
// proposal cards (the rule in plain words, keys, SQL in <details>) and the preview of a
// proposal on the data (counts, match rates by count and amount, unmatched examples with the
// reason each one missed). Plain DOM; the data is the session API's events as they come.
import { el, formatNumber } from "./api.js";

const MAX_JSON = 6000;
let cards = 0;

function clip(value) {
  const text = JSON.stringify(value, null, 2) ?? "";
  return text.length > MAX_JSON ? `${text.slice(0, MAX_JSON)}\n… (${formatNumber(text.length)} characters in all)` : text;
}

export function pct(value) {
  return value === null || value === undefined ? "—" : `${(value * 100).toFixed(1)}%`;
}

// --- tools ---------------------------------------------------------------------------------

const LABELS = {
  list_sources: () => "Listed the session's sources",
  describe_source: (a) => `Described ${a.alias ?? "a source"}`,
  sample_rows: (a) => `Looked at rows of ${a.alias ?? "a source"}`,
  compare_columns: (a) => `Compared ${a.left_alias}.${a.left_column} with ${a.right_alias}.${a.right_column}`,
  suggest_recipe: () => "Worked out a rule from the data",
  propose_recipe: () => "Checked a proposal",
  preview_recipe: () => "Ran the proposal on the data",
  save_recipe: () => "Saved the recipe",
};

function label(name, args) {
  const make = LABELS[name];
  try {
    return make ? make(args ?? {}) : name;
  } catch {
    return name;
  }
}

function outcome(name, r) {
  if (name === "describe_source" && r.rows !== undefined) {
    return `${formatNumber(r.rows)} rows, ${r.columns?.length ?? 0} columns`;
  }
  if (name === "compare_columns" && r.reading) return r.reading;
  if (name === "sample_rows" && r.rows) return `${r.rows.length} of ${formatNumber(r.matching_rows)} rows`;
  if (name === "list_sources" && r.sources) return r.sources.map((s) => s.alias).join(", ");
  if (name === "preview_recipe" && r.preview) return `${formatNumber(r.preview.counts.matched_rows)} matched pairs`;
  if (name === "save_recipe" && r.version) return `${r.recipe_id}, version ${r.version}`;
  if ((name === "propose_recipe" || name === "suggest_recipe") && r.valid) return "valid";
  return "";
}

export function toolLine(call) {
  const text = label(call.name, call.arguments);
  return el(
    "div",
    { class: "tool pending", "data-tool": call.id, "data-name": call.name, "aria-busy": "true" },
    el(
      "details",
      {},
      el("summary", {}, el("span", { class: "tool-mark", "aria-hidden": "true", text: "…" }), " ", el("span", { class: "tool-label", text: `${text}…` })),
      el("p", { class: "small muted", text: `${call.name}, with` }),
      el("pre", {}, el("code", { text: clip(call.arguments) })),
    ),
  );
}

export function toolDone(line, call, result) {
  line.classList.remove("pending");
  line.removeAttribute("aria-busy");
  line.classList.add(result.ok ? "tool-ok" : "tool-failed");
  const text = label(call?.name ?? result.name, call?.arguments);
  const said = result.ok ? outcome(result.name, result.result) : "";
  line.querySelector(".tool-mark").textContent = result.ok ? "✓" : "✗";
  line.querySelector(".tool-label").textContent = result.ok
    ? `${text}${said ? `: ${said}` : ""}`
    : `${text}: failed`;
  const details = line.querySelector("details");
  details.append(el("p", { class: "small muted", text: "It answered" }), el("pre", {}, el("code", { text: clip(result.result) })));
  if (!result.ok) {
    const problems = result.result?.problems ?? [];
    line.append(
      el("p", { class: "tool-error", text: result.result?.error ?? "the tool failed" }),
      problems.length ? el("ul", { class: "tool-problems" }, problems.map((p) => el("li", { text: p }))) : null,
    );
  }
}

// --- proposals -----------------------------------------------------------------------------

function sideFacts(side) {
  const keys = (side.primary_key ?? []).join(" + ");
  const filters = (side.filters ?? []).map((f) => `${f.column} ${f.op} ${JSON.stringify(f.value)}`);
  return [
    el("dt", { text: side.alias }),
    el(
      "dd",
      {},
      "key ",
      el("code", { text: keys }),
      filters.length ? `; only records where ${filters.join(" and ")}` : "",
    ),
  ];
}

function sqlBlock(proposal) {
  const passes = proposal.recipe.passes ?? [];
  if (proposal.sql.length <= 1) {
    const sql = proposal.sql[0]?.sql ?? proposal.recipe.match_sql ?? "";
    return el("details", { class: "sql" }, el("summary", { text: "SQL" }), el("pre", {}, el("code", { text: sql })));
  }
  return el(
    "ol",
    { class: "passes" },
    proposal.sql.map((pass, i) =>
      el(
        "li",
        {},
        el("strong", { text: pass.name }),
        passes[i]?.description ? `: ${passes[i].description}` : "",
        el("details", { class: "sql" }, el("summary", { text: `SQL of ${pass.name}` }), el("pre", {}, el("code", { text: pass.sql }))),
      ),
    ),
  );
}

export function proposalCard(proposal) {
  cards += 1;
  const id = `proposal-${cards}`;
  const recipe = proposal.recipe;
  const sources = recipe.sources;
  const oneToOne = recipe.cardinality === "one_to_one";
  const card = el(
    "section",
    { class: "proposal", id, "data-sha": proposal.sha256, "aria-labelledby": `${id}-h` },
    el("h3", { id: `${id}-h` }, "Proposal: ", recipe.name, " ", el("code", { class: "muted", text: recipe.recipe_id })),
    el("p", { class: "plain-words", text: proposal.match_description || "This proposal has no plain-words description; its SQL says what matches." }),
    el(
      "dl",
      { class: "facts small" },
      sideFacts(sources.left),
      sideFacts(sources.right),
      el("dt", { text: "Each record" }),
      el(
        "dd",
        {},
        oneToOne
          ? ["is used at most once: the candidate with the smallest ", el("code", { text: recipe.rank_by }), " wins"]
          : "may match more than one record on the other side (such keys are counted as ambiguous)",
      ),
    ),
    sqlBlock(proposal),
    el("div", { class: "preview-slot" }),
    el("div", { class: "proposal-state small muted", role: "status" }),
    el("div", { class: "actions proposal-actions" }),
    el("div", { class: "decision" }),
  );
  card.proposal = proposal;
  return card;
}

// --- previews ------------------------------------------------------------------------------

function bar(value, what) {
  if (value === null || value === undefined) return el("span", { class: "muted", text: "—" });
  const width = Math.max(0, Math.min(100, value * 100)).toFixed(1);
  return el(
    "span",
    { class: "rate-cell" },
    el("span", { class: "bar", role: "img", "aria-label": `${pct(value)} ${what}` }, el("span", { style: `width: ${width}%` })),
    el("span", { class: "rate-text", text: pct(value) }),
  );
}

function row(label, left, right, attrs = {}) {
  const cell = (value) => (value instanceof Node ? el("td", {}, value) : el("td", { class: "num", text: formatNumber(value) }));
  return el("tr", attrs, el("th", { scope: "row", text: label }), cell(left), cell(right));
}

function scopeText(scope, la, ra) {
  if (scope.whole) return `Run on all the data: ${formatNumber(scope.left_rows)} ${la} and ${formatNumber(scope.right_rows)} ${ra} records.`;
  return (
    `Run on a sample (${scope.sample}): ${formatNumber(scope.left_rows)} of ${formatNumber(scope.left_rows_total)} ${la} ` +
    `and ${formatNumber(scope.right_rows)} of ${formatNumber(scope.right_rows_total)} ${ra} records.`
  );
}

function keyText(key) {
  return Object.values(key ?? {}).map((v) => (v === null ? "∅" : String(v))).join(" + ");
}

// A few of the record's other values, so that the example can be recognised.
function rowText(item) {
  const keys = new Set(Object.keys(item.key ?? {}));
  return Object.entries(item.row ?? {})
    .filter(([column]) => !keys.has(column))
    .slice(0, 4)
    .map(([column, value]) => `${column} ${value === null ? "∅" : String(value)}`)
    .join(" · ");
}

function examples(items, alias, other) {
  if (!items?.length) return el("p", { class: "muted small", text: `Every ${alias} record matched.` });
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: "compact examples" },
      el("caption", { text: `Unmatched ${alias}: the first ${items.length}` }),
      el(
        "thead",
        {},
        el("tr", {}, el("th", { scope: "col", text: "Record" }), el("th", { scope: "col", text: "Why it did not match" }), el("th", { scope: "col", text: `Nearest ${other}` })),
      ),
      el(
        "tbody",
        {},
        items.map((item) =>
          el(
            "tr",
            {},
            el("td", {}, el("code", { text: keyText(item.key) }), item.row ? el("span", { class: "record small muted", text: rowText(item) }) : null),
            el("td", { text: item.reason }),
            el("td", {}, item.nearest ? el("code", { text: keyText(item.nearest) }) : el("span", { class: "muted", text: "none" })),
          ),
        ),
      ),
    ),
  );
}

export function previewSection(preview, recipe) {
  const la = recipe.sources.left.alias;
  const ra = recipe.sources.right.alias;
  const c = preview.counts;
  const r = preview.match_rate;
  const amounts = preview.amount_columns ?? {};
  const ambiguous = (c.ambiguous_left_keys ?? 0) + (c.ambiguous_right_keys ?? 0) > 0;
  const passes = preview.passes ?? [];
  const amountNote = (column) => (column ? ` (of ${column})` : "");
  return el(
    "section",
    { class: "preview", "aria-label": `Preview of ${recipe.name} on the data` },
    el("h4", { text: "What it matched" }),
    el("p", { class: "small muted", text: scopeText(preview.scope, la, ra) }),
    el(
      "div",
      { class: "preview-grid" },
      el(
        "table",
        { class: "compact preview-counts" },
        el("caption", { class: "sr-only", text: "Records matched on each side" }),
        el("thead", {}, el("tr", {}, el("th", { scope: "col" }, el("span", { class: "sr-only", text: "Measure" })), el("th", { scope: "col", class: "num", text: la }), el("th", { scope: "col", class: "num", text: ra }))),
        el(
          "tbody",
          {},
          row("Records", c.left_rows, c.right_rows),
          row("Matched", c.matched_left, c.matched_right),
          row("Unmatched", c.unmatched_left, c.unmatched_right),
          ambiguous ? row("Ambiguous keys", c.ambiguous_left_keys, c.ambiguous_right_keys) : null,
          row("Match rate by count", bar(r.left_by_count, `of ${la} records`), bar(r.right_by_count, `of ${ra} records`), { class: "rate-row" }),
          row(
            "Match rate by amount",
            bar(r.left_by_amount, `of the ${la} amount${amountNote(amounts.left)}`),
            bar(r.right_by_amount, `of the ${ra} amount${amountNote(amounts.right)}`),
            { class: "rate-row" },
          ),
        ),
      ),
      el(
        "div",
        { class: "preview-facts" },
        el("p", { class: "big-number" }, el("strong", { text: formatNumber(c.matched_rows) }), " matched pairs"),
        el(
          "p",
          {},
          "Control totals ",
          preview.control_totals_hold
            ? el("span", { class: "pass", text: "hold" })
            : el("span", { class: "fail", text: "do not hold" }),
          preview.control_totals_hold ? ": every record is matched or unmatched, once." : ": see the SQL and the keys.",
        ),
        amounts.left || amounts.right
          ? el("p", { class: "small muted" }, "Amounts: ", el("code", { text: amounts.left ?? "—" }), " and ", el("code", { text: amounts.right ?? "—" }), ".")
          : null,
        passes.length > 1
          ? el(
              "table",
              { class: "compact" },
              el("caption", { text: "Passes" }),
              el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Pass" }), el("th", { scope: "col", class: "num", text: "Candidates" }), el("th", { scope: "col", class: "num", text: "Matched" }))),
              el(
                "tbody",
                {},
                passes.map((p) => el("tr", {}, el("th", { scope: "row", text: p.name }), el("td", { class: "num", text: formatNumber(p.candidates) }), el("td", { class: "num", text: formatNumber(p.matched) }))),
              ),
            )
          : null,
      ),
    ),
    el(
      "div",
      { class: "examples-grid" },
      examples(preview.unmatched_examples?.left, la, ra),
      examples(preview.unmatched_examples?.right, ra, la),
    ),
  );
}
