// Letterbox's page: sends the form to /v1/cover-letters and shows the letter as it streams in.
// It holds no credential: the session cookie the server set with this page (HttpOnly, scoped
// to the letters endpoint) is the only one, and scripts cannot read it.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("letter-form");
const status = $("status");
const letter = $("letter");
const copy = $("copy");
const download = $("download");

function say(text, isError) {
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

// Splits a server-sent event stream into {event, data} as the bytes arrive.
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

form.addEventListener("submit", async (submitted) => {
  submitted.preventDefault();
  const body = new FormData();
  body.append("resume", $("resume").files[0]);
  body.append("job_description", $("job").value);
  body.append("tone", $("tone").value);
  body.append("length", $("length").value);
  $("write").disabled = copy.disabled = download.disabled = true;
  letter.textContent = "";
  letter.removeAttribute("data-done");
  say("Reading your documents…");
  try {
    const response = await fetch("/v1/cover-letters", {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { accept: "text/event-stream" },
    });
    if (!response.ok) {
      const refusal = await response.json().catch(() => null);
      throw new Error(refusal?.error?.message ?? `the server answered ${response.status}`);
    }
    for await (const { event, data } of events(response)) {
      if (event === "job") say("Writing…");
      else if (event === "token") letter.textContent += data.text;
      else if (event === "reset") letter.textContent = "";
      else if (event === "done") {
        letter.textContent = data.cover_letter;
        letter.setAttribute("data-done", "true");
        say(`Done in ${(data.timings_ms.total / 1000).toFixed(1)} s.`);
        copy.disabled = download.disabled = false;
      } else if (event === "error") throw new Error(data.error.message);
    }
    if (!letter.hasAttribute("data-done")) throw new Error("the connection closed early");
  } catch (error) {
    say(`No letter: ${error.message}.`, true);
  } finally {
    $("write").disabled = false;
  }
});

copy.addEventListener("click", async () => {
  await navigator.clipboard.writeText(letter.textContent);
  say("Copied.");
});

download.addEventListener("click", () => {
  const url = URL.createObjectURL(new Blob([letter.textContent], { type: "text/plain" }));
  const link = Object.assign(document.createElement("a"), { href: url, download: "cover-letter.txt" });
  link.click();
  URL.revokeObjectURL(url);
});
