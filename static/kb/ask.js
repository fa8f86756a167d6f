// The staff Q&A page: stream an answer in, open citations in the side panel, send feedback.
// Plain JS, no build step. The server renders every piece of HTML; this file only moves it.
"use strict";

const form = document.getElementById("ask-form");
const questionBox = document.getElementById("question");
const askButton = document.getElementById("ask-button");
const answerBox = document.getElementById("answer");
const statusLine = document.getElementById("status");
const panel = document.getElementById("panel");
const panelBody = document.getElementById("panel-body");
const messages = document.getElementById("messages").dataset;
const csrfToken = form.querySelector("[name=csrfmiddlewaretoken]").value;
let lastFocus = null;

function setStatus(text) {
  statusLine.textContent = text || "";
}

// Server-sent events arrive over fetch (EventSource cannot POST): "event: name\ndata: json\n\n".
async function* readEvents(response) {
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
      const name = (block.match(/^event: (.*)$/m) || [])[1];
      const data = (block.match(/^data: (.*)$/m) || [])[1];
      if (name && data) yield { name, data: JSON.parse(data) };
    }
  }
}

async function ask(event) {
  event.preventDefault();
  if (!questionBox.value.trim()) {
    questionBox.focus();
    return;
  }
  askButton.disabled = true;
  closePanel();
  setStatus(messages.thinking);
  answerBox.classList.remove("empty");
  answerBox.innerHTML = '<p class="answer-text streaming" id="live"></p>';
  const live = document.getElementById("live");
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-CSRFToken": csrfToken, Accept: "text/event-stream" },
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error || messages.failed);
    }
    for await (const { name, data } of readEvents(response)) {
      if (name === "token") {
        if (!live.textContent) setStatus(messages.writing);
        live.textContent += data.text;
        if (live.textContent.endsWith(".") || live.textContent.endsWith("。")) setStatus(messages.checking);
      } else if (name === "answer") {
        answerBox.innerHTML = data.html;
        addToHistory(data.history_entry);
        history.pushState({}, "", `/questions/${data.id}`);
        setStatus("");
      } else if (name === "error") {
        throw new Error(data.message);
      }
    }
  } catch (error) {
    answerBox.innerHTML = "";
    answerBox.classList.add("empty");
    setStatus("");
    const alert = document.createElement("p");
    alert.className = "error";
    alert.setAttribute("role", "alert");
    alert.textContent = error.message || messages.failed;
    answerBox.append(alert);
    answerBox.classList.remove("empty");
  } finally {
    askButton.disabled = false;
  }
}

function addToHistory(html) {
  const list = document.getElementById("history-list");
  document.getElementById("history-empty")?.remove();
  list.querySelectorAll(".current").forEach((item) => item.classList.remove("current"));
  list.insertAdjacentHTML("afterbegin", html);
}

async function openCitation(button) {
  lastFocus = button;
  const response = await fetch(button.dataset.citation, { headers: { Accept: "text/html" } });
  panelBody.innerHTML = response.ok ? await response.text() : `<p class="error">${messages.failed}</p>`;
  panel.hidden = false;
  document.body.classList.add("panel-open");
  panel.focus();
  document.getElementById("cited")?.scrollIntoView({ block: "center" });
}

function closePanel() {
  if (panel.hidden) return;
  panel.hidden = true;
  document.body.classList.remove("panel-open");
  lastFocus?.focus();
}

async function sendFeedback(feedbackForm, submitter) {
  const body = new FormData(feedbackForm);
  body.set("rating", submitter.value);
  const response = await fetch(feedbackForm.action, {
    method: "POST",
    body,
    headers: { "X-CSRFToken": csrfToken },
  });
  if (response.ok) feedbackForm.parentElement.innerHTML = await response.text();
}

form.addEventListener("submit", ask);
questionBox.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
});
document.addEventListener("click", (event) => {
  const cite = event.target.closest("[data-citation]");
  if (cite) openCitation(cite);
  const again = event.target.closest("[data-feedback-again]");
  if (again) {
    again.closest(".feedback").querySelector("form").hidden = false;
    again.closest(".thanks").remove();
  }
});
document.addEventListener("submit", (event) => {
  if (event.target.matches(".feedback-form")) {
    event.preventDefault();
    sendFeedback(event.target, event.submitter);
  }
});
document.getElementById("panel-close").addEventListener("click", closePanel);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") closePanel();
});
