// A builder session's page: the conversation, replayed from the session's stored events and
// then live. A message is POSTed and its Server-Sent Events are read from the fetch
// response as they stream; a turn that is already running (the first turn of a session that
// edits a recipe, another tab's, or one cut off from this page) is followed with EventSource
// on GET …/events, which resumes with Last-Event-ID. Accept saves the proposal through the
// same API a script uses (POST …/accept).
import { csrfHeaders, el, errorMessage, getJSON } from "./api.js";
import { previewSection, proposalCard, toolDone, toolLine } from "./builder-cards.js";
import { readEvents } from "./sse.js";

const STOPPED = { Assistant: "The assistant", "Kalla's builder": "The builder" };
const KINDS = ["text_delta", "tool_call", "tool_result", "proposal", "preview", "error", "done"];

// The stored events as turns: a turn ends with 'done' or, when the app stopped during it,
// with the 'error' that says so (no 'done' follows it).
function splitTurns(events) {
  const turns = [];
  let current = [];
  events.forEach((event, i) => {
    current.push(event);
    const next = events[i + 1];
    if (event.kind === "done" || (event.kind === "error" && next && next.kind !== "done")) {
      turns.push(current);
      current = [];
    }
  });
  if (current.length) turns.push(current);
  return turns;
}

function nearBottom() {
  const page = document.scrollingElement;
  return page.scrollHeight - page.scrollTop - page.clientHeight < 160;
}

class Conversation {
  constructor(log) {
    this.log = log;
    this.id = log.dataset.session;
    this.mode = log.dataset.mode;
    this.base = `/api/agent/sessions/${this.id}`;
    this.lastSeq = 0;
    this.turns = 0; // assistant turns drawn
    this.body = null; // the running turn's message body
    this.text = null; // the text block text deltas go to
    this.calls = new Map(); // tool call id → {line, call}
    this.session = null;
    this.busy = false;
    this.followFrom = null; // where the followed turn's items begin in the log
    this.status = document.getElementById("turn-status");
    this.composer = document.getElementById("composer");
    this.message = document.getElementById("message");
    this.send = document.getElementById("send");
    this.composerError = document.getElementById("composer-error");
    this.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.message.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this.submit();
      }
    });
  }

  async start() {
    let session;
    let events;
    try {
      [session, events] = await Promise.all([getJSON(this.base), getJSON(`${this.base}/events`)]);
    } catch (error) {
      this.status.textContent = `This session could not be loaded: ${error.message}. Reload the page to try again.`;
      return;
    }
    this.session = session;
    this.replay(session, events);
    if (session.status === "running") {
      this.follow();
    } else {
      this.refreshActions();
      if (events.length) this.composer.scrollIntoView({ block: "end" });
    }
  }

  // --- drawing -----------------------------------------------------------------------------

  replay(session, events) {
    const turns = splitTurns(events);
    const users = session.transcript.filter((t) => t.role === "user").map((t) => t.text);
    let next = 0;
    turns.forEach((turn, i) => {
      // a turn cut short before it said anything has no message of its own
      const lone = turn.every((event) => event.kind === "error");
      if (next < users.length && !(lone && users.length - next < turns.length - i)) {
        this.userMessage(users[next]);
        next += 1;
      }
      for (const event of turn) this.handle(event.seq, event.kind, event.data);
      this.body = null;
      this.closeText();
    });
    for (; next < users.length; next += 1) this.userMessage(users[next]); // the running turn's
  }

  // A text block ends when something else comes: its trailing blank lines go.
  closeText() {
    if (this.text) this.text.textContent = this.text.textContent.replace(/\s+$/, "");
    this.text = null;
  }

  userItem(text) {
    return el("li", { class: "msg msg-user" }, el("p", { class: "who", text: "You" }), el("div", { class: "say", text }));
  }

  userMessage(text) {
    const item = this.userItem(text);
    this.log.append(item);
    return item;
  }

  who() {
    if (this.turns === 0 && this.session?.seed) return "Kalla";
    return this.mode === "assistant" ? "Assistant" : "Kalla's builder";
  }

  turnBody() {
    if (!this.body) {
      this.body = el("div", { class: "msg-body" });
      this.speaker = this.who();
      this.log.append(el("li", { class: `msg msg-reply msg-${this.mode}` }, el("p", { class: "who", text: this.speaker }), this.body));
      this.turns += 1;
    }
    return this.body;
  }

  handle(seq, kind, data) {
    if (seq && seq <= this.lastSeq) return; // already drawn (a replay overlapping a stream)
    if (seq) this.lastSeq = seq;
    if (kind === "done") {
      this.body = null;
      this.closeText();
      return;
    }
    const stick = this.busy && nearBottom();
    const body = this.turnBody();
    if (kind === "text_delta") {
      if (!this.text) {
        this.text = el("div", { class: "say" });
        body.append(this.text);
      }
      this.text.textContent += data.text;
    } else if (kind === "tool_call") {
      const line = toolLine(data);
      this.calls.set(data.id, { line, call: data });
      body.append(line);
      this.closeText();
    } else if (kind === "tool_result") {
      const known = this.calls.get(data.id);
      if (known) {
        toolDone(known.line, known.call, data);
      } else {
        const line = toolLine({ id: data.id, name: data.name, arguments: {} });
        body.append(line);
        toolDone(line, null, data);
      }
      this.closeText();
    } else if (kind === "proposal") {
      body.append(proposalCard(data));
      this.closeText();
      this.refreshActions();
    } else if (kind === "preview") {
      const cards = [...this.log.querySelectorAll(".proposal")].filter((card) => card.dataset.sha === data.sha256);
      const card = cards.at(-1);
      if (card) {
        card.querySelector(".preview-slot").replaceChildren(previewSection(data.preview, card.proposal.recipe));
        card.dataset.previewed = "true";
      }
      this.refreshActions();
    } else if (kind === "error") {
      body.append(
        el(
          "div",
          { class: "error", role: "alert" },
          el("p", { text: `${STOPPED[this.speaker] ?? "Kalla"} stopped: ${data.message}` }),
          data.retryable ? el("p", { class: "small", text: "Nothing is lost: send your message again when you are ready." }) : null,
        ),
      );
      this.closeText();
    }
    if (stick) window.scrollTo(0, document.scrollingElement.scrollHeight);
  }

  // --- turns -------------------------------------------------------------------------------

  setBusy(busy) {
    this.busy = busy;
    this.send.disabled = busy;
    // the log (a live region) is read out once a turn is over, not word by word
    document.getElementById("conversation-log")?.setAttribute("aria-busy", busy ? "true" : "false");
    this.status.textContent = busy
      ? this.mode === "assistant"
        ? "The assistant is answering…"
        : "Kalla is working on it…"
      : "";
    this.refreshActions();
  }

  async finish() {
    this.body = null;
    this.closeText();
    try {
      this.session = await getJSON(this.base);
    } catch {
      // the page keeps what it has; the next reload shows the rest
    }
    this.addMissingUsers();
    this.setBusy(false);
    this.updateUsage();
  }

  // A turn followed from its start may have begun before its message was stored: the
  // transcript has it now, so it goes before the turn's reply.
  addMissingUsers() {
    if (this.followFrom === null || !this.session) return;
    const users = this.session.transcript.filter((t) => t.role === "user").map((t) => t.text);
    const drawn = this.log.querySelectorAll(".msg-user").length;
    const anchor = this.log.children[this.followFrom] ?? null;
    for (const text of users.slice(drawn)) this.log.insertBefore(this.userItem(text), anchor);
    this.followFrom = null;
  }

  async submit(text = null) {
    const content = (text ?? this.message.value).trim();
    this.composerError.replaceChildren();
    this.message.removeAttribute("aria-invalid");
    if (this.busy) return;
    if (!content) {
      this.composerError.replaceChildren(el("p", { text: "Write a message first." }));
      this.message.setAttribute("aria-invalid", "true");
      this.message.focus();
      return;
    }
    this.setBusy(true);
    const mine = this.userMessage(content);
    if (text === null) this.message.value = "";
    let response;
    try {
      response = await fetch(`${this.base}/messages`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...csrfHeaders() },
        body: JSON.stringify({ content }),
      });
    } catch {
      this.refused(mine, content, "The app could not be reached: check that kalla serve is running, then send it again.");
      return;
    }
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      const { message, problems } = errorMessage(body, response.status);
      this.refused(mine, content, `Not sent: ${message}`, problems);
      return;
    }
    let ended = false;
    try {
      for await (const event of readEvents(response)) {
        this.handle(Number(event.id), event.event, event.data);
        if (event.event === "done") ended = true;
      }
    } catch {
      ended = false; // the connection broke; the turn goes on in the app
    }
    if (ended) await this.finish();
    else this.follow();
  }

  refused(mine, content, message, problems = []) {
    mine.remove();
    if (!this.message.value) this.message.value = content;
    this.composerError.replaceChildren(el("p", { text: message }));
    if (problems.length) this.composerError.append(el("ul", {}, problems.map((p) => el("li", { text: p }))));
    this.setBusy(false);
    this.message.focus();
  }

  // Follow a running turn from its stored events (EventSource resumes with Last-Event-ID).
  follow() {
    this.setBusy(true);
    this.followFrom = this.log.children.length;
    const source = new EventSource(`${this.base}/events?after=${this.lastSeq}`);
    for (const kind of KINDS) {
      source.addEventListener(kind, (event) => {
        // 'error' is also how EventSource reports a dropped connection: only ours carry data
        if (!(event instanceof MessageEvent) || !event.data) return;
        this.handle(Number(event.lastEventId), kind, JSON.parse(event.data));
        if (kind === "done") {
          source.close();
          this.finish();
        }
      });
    }
    source.addEventListener("error", async (event) => {
      if (event instanceof MessageEvent && event.data) return;
      // the stream ended without 'done' (the app stopped during the turn) or the network went
      try {
        const session = await getJSON(this.base);
        if (session.status === "running") return; // EventSource reconnects by itself
        source.close();
        const events = await getJSON(`${this.base}/events?after=${this.lastSeq}`);
        for (const stored of events) this.handle(stored.seq, stored.kind, stored.data);
        await this.finish();
      } catch {
        source.close();
        this.setBusy(false);
        this.status.textContent = "Lost the connection to the app; reload the page to see where the session is.";
      }
    });
  }

  // --- proposals: Accept and Reject ----------------------------------------------------------

  refreshActions() {
    const cards = [...this.log.querySelectorAll(".proposal")];
    const saved = this.session?.saved && this.session.accepted_sha256;
    cards.forEach((card, i) => {
      const state = card.querySelector(".proposal-state");
      const actions = card.querySelector(".proposal-actions");
      const current = i === cards.length - 1;
      if (saved && card.dataset.sha === this.session.accepted_sha256 && current) {
        if (!card.querySelector(".saved-notice")) card.querySelector(".decision").replaceChildren(this.savedNotice(this.session.saved, true));
        actions.replaceChildren();
        state.textContent = "";
        return;
      }
      if (!current) {
        actions.replaceChildren();
        card.querySelector(".decision").replaceChildren();
        card.classList.add("superseded");
        state.textContent = "A later proposal replaced this one.";
        return;
      }
      card.classList.remove("superseded");
      const previewed = card.dataset.previewed === "true";
      state.textContent = previewed ? "" : "Not run on the data yet: it can be accepted once it has been previewed.";
      if (!actions.childElementCount) {
        actions.append(
          el("button", { type: "button", class: "accept", onclick: () => this.openSave(card) }, "Accept…"),
          el("button", { type: "button", class: "secondary reject", onclick: () => this.openReject(card) }, "Reject"),
        );
      }
      actions.querySelector(".accept").disabled = this.busy || !previewed;
      actions.querySelector(".reject").disabled = this.busy;
    });
  }

  openSave(card) {
    const decision = card.querySelector(".decision");
    const recipe = card.proposal.recipe;
    const seed = this.session?.seed;
    const n = card.id;
    const id = el("input", { type: "text", id: `${n}-id`, name: "recipe_id", value: seed?.recipe_id ?? recipe.recipe_id, required: true, maxlength: "200", spellcheck: "false" });
    const name = el("input", { type: "text", id: `${n}-name`, name: "name", value: seed?.name ?? recipe.name, required: true, maxlength: "200" });
    const error = el("div", { class: "field-error", role: "alert" });
    const form = el(
      "form",
      { class: "save-form form row", "aria-label": "Save the recipe" },
      el("label", { for: `${n}-id`, text: "Recipe id" }),
      id,
      el("label", { for: `${n}-name`, text: "Name" }),
      name,
      el("button", { type: "submit", text: "Save the recipe" }),
      el("button", { type: "button", class: "secondary", text: "Cancel", onclick: () => decision.replaceChildren() }),
      el("p", { class: "help", text: "A recipe id already saved gets its next version; the earlier ones stay." }),
      error,
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.accept(card, id.value.trim(), name.value.trim(), error, form);
    });
    decision.replaceChildren(form);
    id.focus();
  }

  async accept(card, recipeId, name, error, form) {
    error.replaceChildren();
    if (!recipeId || !name) {
      error.append(el("p", { text: "Give the recipe an id and a name." }));
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    let response;
    let body = null;
    try {
      response = await fetch(`${this.base}/accept`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", ...csrfHeaders() },
        body: JSON.stringify({ recipe_id: recipeId, name }),
      });
      body = await response.json();
    } catch {
      button.disabled = false;
      error.append(el("p", { text: "The app could not be reached: try again." }));
      return;
    }
    if (!response.ok) {
      button.disabled = false;
      const { message, problems } = errorMessage(body, response.status);
      error.append(el("p", { text: `Not saved: ${message}` }));
      if (problems.length) error.append(el("ul", {}, problems.map((p) => el("li", { text: p }))));
      return;
    }
    const saved = { recipe_id: body.recipe_id, version: body.version };
    const notice = this.savedNotice(saved, response.status === 201, body.name);
    card.querySelector(".decision").replaceChildren(notice);
    card.querySelector(".proposal-actions").replaceChildren();
    document.getElementById("saved-box")?.replaceChildren(this.savedNotice(saved, response.status === 201, body.name));
    notice.querySelector("a")?.focus();
    try {
      this.session = await getJSON(this.base);
    } catch {
      // the notice stands; a reload shows the same from the API
    }
  }

  savedNotice(saved, created, name = null) {
    const recipe = encodeURIComponent(saved.recipe_id);
    return el(
      "div",
      { class: "notice saved-notice", role: "status" },
      el(
        "p",
        {},
        created ? "Saved as recipe " : "Already saved, identical: recipe ",
        el("a", { href: `/recipes/${recipe}?version=${saved.version}` }, name ?? saved.recipe_id),
        `, version ${saved.version}. `,
        el("a", { class: "button small", href: `/runs/new?recipe=${recipe}&version=${saved.version}` }, "Run it"),
      ),
    );
  }

  openReject(card) {
    const decision = card.querySelector(".decision");
    if (this.mode !== "assistant") {
      const onSeed = this.session?.seed && card.dataset.sha === this.session.seed.sha256;
      decision.replaceChildren(
        el(
          "div",
          { class: "warning", role: "status" },
          el(
            "p",
            {},
            onSeed
              ? "Without an assistant this recipe cannot be changed by conversation. Send a message to see the rule Kalla's builder finds in the data, to compare; "
              : "Kalla's builder gives one rule for these sources and cannot revise it by conversation. ",
            "To change it by hand, save it and add an edited copy of its JSON on the Recipes page; with ANTHROPIC_API_KEY set, the assistant can change it with you.",
          ),
        ),
      );
      card.classList.add("rejected");
      return;
    }
    const n = card.id;
    const why = el("textarea", { id: `${n}-why`, rows: "2", maxlength: "2000" });
    const form = el(
      "form",
      { class: "reject-form form", "aria-label": "Reject the proposal" },
      el("label", { for: `${n}-why`, text: "What is wrong with it?" }),
      why,
      el("div", { class: "actions" }, el("button", { type: "submit", text: "Tell the assistant" }), el("button", { type: "button", class: "secondary", text: "Cancel", onclick: () => decision.replaceChildren() })),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const reason = why.value.trim();
      card.classList.add("rejected");
      decision.replaceChildren(el("p", { class: "muted small", text: "Rejected." }));
      this.submit(reason ? `I reject this proposal: ${reason}` : "I reject this proposal; propose another.");
    });
    decision.replaceChildren(form);
    why.focus();
  }

  updateUsage() {
    const usage = document.getElementById("usage");
    const s = this.session;
    if (usage && s) {
      const tokens = (s.usage.input_tokens ?? 0) + (s.usage.output_tokens ?? 0);
      usage.textContent = `${s.turns} model call(s), ${tokens.toLocaleString("en")} tokens`;
    }
  }
}

const log = document.getElementById("conversation");
if (log) {
  // a file dropped here by mistake would replace the conversation with the file
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  new Conversation(log).start();
}
