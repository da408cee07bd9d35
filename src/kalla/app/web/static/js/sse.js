// Server-Sent Events read from a fetch() response (EventSource cannot POST): each event is
// {id, event, data} with its data parsed as JSON, yielded as soon as it has arrived whole.
function parse(block) {
  const event = { id: null, event: "message", data: "" };
  const data = [];
  for (const raw of block.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "data") data.push(value);
    else if (field === "event") event.event = value;
    else if (field === "id") event.id = value;
  }
  if (!data.length) return null;
  event.data = JSON.parse(data.join("\n"));
  return event;
}

export async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value; // Kalla's streams end lines with LF
    let cut = buffer.indexOf("\n\n");
    while (cut >= 0) {
      const event = parse(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      if (event) yield event;
      cut = buffer.indexOf("\n\n");
    }
  }
  const last = parse(buffer.trim());
  if (last) yield last;
}
