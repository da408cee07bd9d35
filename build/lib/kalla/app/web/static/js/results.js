// Result tabs as real tables over /api/runs/{id}/results/{output}: the server pages, sorts
// and filters; this module only keeps the view's state and draws it.
import { el, errorMessage, formatNumber } from "./api.js";

const root = document.getElementById("results");
const OPS = [
  ["contains", "has"],
  ["eq", "="],
  ["neq", "≠"],
  ["gt", ">"],
  ["gte", "≥"],
  ["lt", "<"],
  ["lte", "≤"],
];
const PAGE_SIZES = [25, 50, 100, 250];
const isNumeric = (type) => /^(decimal|int|uint|float|double|halffloat)/.test(type);
const isDate = (type) => /^(date|timestamp)/.test(type);

function viewParams(view, { paging = true, choose = false } = {}) {
  const params = new URLSearchParams();
  // downloads carry the chosen columns; pages fetch all, so the chooser can list them
  if (choose && view.hidden.size && view.columns) {
    for (const c of view.columns) if (!view.hidden.has(c.name)) params.append("columns", c.name);
  }
  if (paging) {
    params.set("offset", view.offset);
    params.set("limit", view.limit);
  }
  if (view.sort) {
    params.set("sort", view.sort);
    params.set("order", view.order);
  }
  if (view.ageFrom) params.set("age_from", view.ageFrom);
  for (const [column, { op, value }] of Object.entries(view.filters)) {
    if (value === "") continue;
    params.append("filter_column", column);
    params.append("filter_op", op);
    params.append("filter_value", value);
  }
  return params;
}

function cellText(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

class ResultsTable {
  constructor(container) {
    this.root = container;
    this.runId = container.dataset.run;
    this.panel = document.getElementById("panel-results");
    this.tabs = [...container.querySelectorAll("[role=tab]")];
    this.layout = JSON.parse(document.getElementById("layout-data")?.textContent || "{}");
    this.views = new Map(); // output -> its view, so switching tabs keeps each one's filters
    this.requestSeq = 0;
    this.tabs.forEach((tab, i) => {
      tab.addEventListener("click", () => this.select(tab));
      tab.addEventListener("keydown", (event) => {
        const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
        if (step) {
          const next = this.tabs[(i + step + this.tabs.length) % this.tabs.length];
          next.focus();
          this.select(next);
        } else if (event.key === "Home" || event.key === "End") {
          const next = event.key === "Home" ? this.tabs[0] : this.tabs[this.tabs.length - 1];
          next.focus();
          this.select(next);
        }
      });
    });
    if (this.tabs.length) this.select(this.tabs[0]);
  }

  select(tab) {
    for (const t of this.tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
    }
    this.panel.setAttribute("aria-labelledby", tab.id);
    this.output = tab.dataset.output;
    if (!this.views.has(this.output)) {
      this.views.set(this.output, {
        offset: 0, limit: 50, sort: null, order: "asc", filters: {}, hidden: new Set(), ageFrom: null,
        columns: null, ageCandidate: undefined,
      });
    }
    this.load();
  }

  get view() {
    return this.views.get(this.output);
  }

  url(format) {
    const params = viewParams(this.view, { paging: !format, choose: Boolean(format) });
    if (format) params.set("format", format);
    return `/api/runs/${this.runId}/results/${this.output}?${params}`;
  }

  async load({ focus } = {}) {
    const seq = ++this.requestSeq;
    this.panel.setAttribute("aria-busy", "true");
    let body = null;
    let status = 0;
    try {
      const response = await fetch(this.url(), { headers: { Accept: "application/json" }, credentials: "same-origin" });
      status = response.status;
      body = await response.json().catch(() => null);
    } catch {
      body = { error: "the app could not be reached; check that kalla serve is running" };
    }
    if (seq !== this.requestSeq) return; // a newer request replaced this one
    this.panel.removeAttribute("aria-busy");
    if (status !== 200) {
      this.draw(null, errorMessage(body, status).message, focus);
      return;
    }
    const view = this.view;
    if (view.ageCandidate === undefined && !view.ageFrom) {
      const date = body.columns.find((c) => isDate(c.type));
      view.ageCandidate = this.output.startsWith("unmatched") && date ? date.name : null;
    }
    this.draw(body, null, focus);
  }

  draw(page, error, focus) {
    const view = this.view;
    const columns = page ? page.columns : view.columns || [];
    if (page) view.columns = columns;
    const shown = columns.filter((c) => !view.hidden.has(c.name));
    const drill = this.output === "matched" && this.layout.sides && this.layout.sides.length === 2;

    const toolbar = el("div", { class: "toolbar" },
      this.columnChooser(columns),
      view.ageCandidate ? el("label", { class: "check" },
        el("input", {
          type: "checkbox", id: "age-toggle", checked: Boolean(view.ageFrom),
          onchange: (e) => { view.ageFrom = e.target.checked ? view.ageCandidate : null; if (!view.ageFrom) delete view.filters.age_days; view.offset = 0; this.load({ focus: "age-toggle" }); },
        }),
        ` Age in days since ${view.ageCandidate}`) : null,
      el("span", { class: "downloads" }, "Download this view: ",
        el("a", { href: this.url("csv"), download: "" }, "CSV"), " · ",
        el("a", { href: this.url("xlsx"), download: "" }, "Excel"), " · ",
        el("a", { href: this.url("parquet"), download: "" }, "Parquet")),
    );

    const table = el("table", { class: "data results" });
    table.append(el("caption", { class: "sr-only" }, `${this.output.replace("_", " ")} rows`));
    const head = el("thead");
    const names = el("tr");
    const filters = el("tr", { class: "filters" });
    if (drill) {
      names.append(el("th", { scope: "col" }, el("span", { class: "sr-only" }, "Records")));
      filters.append(el("td"));
    }
    for (const column of shown) {
      const sorted = view.sort === column.name;
      const th = el("th", { scope: "col", "aria-sort": sorted ? (view.order === "asc" ? "ascending" : "descending") : null, class: isNumeric(column.type) ? "num" : null });
      th.append(el("button", {
        type: "button", class: "sort", "data-column": column.name,
        "aria-label": `Sort by ${column.name}${sorted && view.order === "asc" ? ", descending" : ""}`,
        onclick: () => {
          if (view.sort === column.name) view.order = view.order === "asc" ? "desc" : "asc";
          else { view.sort = column.name; view.order = "asc"; }
          view.offset = 0;
          this.load({ focus: `sort:${column.name}` });
        },
      }, column.name, el("span", { class: "arrow", "aria-hidden": "true" }, sorted ? (view.order === "asc" ? " ▲" : " ▼") : "")));
      th.append(el("span", { class: "type" }, column.type));
      names.append(th);
      filters.append(this.filterCell(column));
    }
    head.append(names, filters);
    table.append(head);
    const tbody = el("tbody");
    if (error) {
      tbody.append(el("tr", {}, el("td", { colspan: Math.max(shown.length + (drill ? 1 : 0), 1), class: "error-cell", role: "alert" }, error)));
    } else if (page.rows.length === 0) {
      tbody.append(el("tr", {}, el("td", { colspan: Math.max(shown.length + (drill ? 1 : 0), 1), class: "muted" },
        Object.keys(view.filters).length ? "No row matches these filters." : "No rows.")));
    } else {
      page.rows.forEach((row, i) => {
        const tr = el("tr");
        if (drill) {
          tr.append(el("td", {}, el("button", { type: "button", class: "small", "aria-label": `Show the two records of row ${view.offset + i + 1}`, onclick: () => this.drill(row) }, "Records")));
        }
        for (const column of shown) {
          const text = cellText(row[column.name]);
          const long = text !== null && text.length > 24 ? text : null; // cut by CSS: whole on hover
          tr.append(el("td", { class: isNumeric(column.type) ? "num" : null, title: long }, text === null ? el("span", { class: "null" }, "null") : text));
        }
        tbody.append(tr);
      });
    }
    table.append(tbody);

    const pager = el("div", { class: "pager" });
    if (page) {
      const first = page.total ? view.offset + 1 : 0;
      const last = Math.min(view.offset + view.limit, page.total);
      const filtered = Object.values(view.filters).some((f) => f.value !== "");
      pager.append(
        el("button", { type: "button", id: "page-prev", disabled: view.offset === 0, onclick: () => { view.offset = Math.max(0, view.offset - view.limit); this.load({ focus: "page-prev" }); } }, "Previous"),
        el("span", { role: "status", class: "count" }, `Rows ${formatNumber(first)}–${formatNumber(last)} of ${formatNumber(page.total)}${filtered ? " (filtered)" : ""}`),
        el("button", { type: "button", id: "page-next", disabled: last >= page.total, onclick: () => { view.offset += view.limit; this.load({ focus: "page-next" }); } }, "Next"),
        el("label", { for: "page-size" }, "Rows per page"),
        this.pageSize(),
      );
    }
    const wrap = el("div", { class: "table-wrap" }, table);
    this.panel.replaceChildren(toolbar, wrap, pager);
    this.restoreFocus(focus);
  }

  restoreFocus(focus) {
    if (!focus) return;
    let target = null;
    if (focus.startsWith("sort:")) target = this.panel.querySelector(`button.sort[data-column="${CSS.escape(focus.slice(5))}"]`);
    else if (focus.startsWith("filter:")) target = this.panel.querySelector(`[data-filter="${CSS.escape(focus.slice(7))}"]`);
    else target = document.getElementById(focus);
    if (target && !target.disabled) target.focus();
  }

  pageSize() {
    const view = this.view;
    const select = el("select", { id: "page-size", onchange: (e) => { view.limit = Number(e.target.value); view.offset = 0; this.load({ focus: "page-size" }); } });
    for (const size of PAGE_SIZES) select.append(el("option", { value: size, selected: size === view.limit }, size));
    return select;
  }

  filterCell(column) {
    const view = this.view;
    const current = view.filters[column.name] || { op: isNumeric(column.type) || isDate(column.type) ? "eq" : "contains", value: "" };
    const apply = () => {
      const value = input.value.trim();
      if (value === "") delete view.filters[column.name];
      else view.filters[column.name] = { op: select.value, value };
      view.offset = 0;
      this.load({ focus: `filter:${column.name}` });
    };
    const select = el("select", { "aria-label": `Filter ${column.name}: how to compare`, onchange: () => { if (input.value.trim() !== "") apply(); } });
    for (const [op, label] of OPS) select.append(el("option", { value: op, selected: op === current.op }, label));
    const input = el("input", {
      type: "search", value: current.value, size: 8, "data-filter": column.name,
      "aria-label": `Filter ${column.name}: value`, placeholder: "filter",
      onkeydown: (e) => { if (e.key === "Enter") { e.preventDefault(); apply(); } },
      onchange: apply,
    });
    return el("td", {}, el("div", { class: "filter" }, select, input));
  }

  columnChooser(columns) {
    const view = this.view;
    const list = el("fieldset", { class: "columns" }, el("legend", {}, "Columns to show"));
    for (const column of columns) {
      const id = `col-${this.output}-${column.name}`.replace(/[^A-Za-z0-9_-]/g, "_");
      list.append(el("label", { class: "check", for: id },
        el("input", {
          type: "checkbox", id, checked: !view.hidden.has(column.name),
          onchange: (e) => {
            if (e.target.checked) view.hidden.delete(column.name);
            else if (view.hidden.size < columns.length - 1) view.hidden.add(column.name);
            else e.target.checked = true; // keep at least one column
            this.load({ focus: id });
          },
        }), ` ${column.name}`));
    }
    return el("details", { class: "chooser" }, el("summary", {}, `Columns (${columns.length - view.hidden.size} of ${columns.length})`), list);
  }

  drill(row) {
    const dialog = document.getElementById("drill");
    const body = document.getElementById("drill-body");
    body.replaceChildren();
    for (const side of this.layout.sides) {
      const table = el("table", { class: "compact" }, el("caption", {}, `${side.side === "left" ? "Left" : "Right"}: ${side.alias}`));
      const tbody = el("tbody");
      for (const column of side.columns) {
        const key = side.primary_key.includes(column.name);
        const value = column.matched_as ? cellText(row[column.matched_as]) : undefined;
        tbody.append(el("tr", { class: key ? "key" : null },
          el("th", { scope: "row" }, column.name, key ? " (key)" : ""),
          el("td", {}, value === undefined ? el("span", { class: "muted" }, "not in the match output") : value === null ? el("span", { class: "null" }, "null") : value)));
      }
      table.append(tbody);
      body.append(table);
    }
    if (this.layout.other && this.layout.other.length) {
      const table = el("table", { class: "compact" }, el("caption", {}, "Computed by the match"));
      const tbody = el("tbody");
      for (const name of this.layout.other) {
        const value = cellText(row[name]);
        tbody.append(el("tr", {}, el("th", { scope: "row" }, name), el("td", {}, value === null ? el("span", { class: "null" }, "null") : value)));
      }
      table.append(tbody);
      body.append(table);
    }
    body.append(el("p", { class: "muted small" }, "Columns the recipe's SQL did not select are not kept with the match; the source itself has them."));
    dialog.showModal();
  }
}

if (root) new ResultsTable(root);
