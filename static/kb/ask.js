// The staff Q&A page: a conversation. Stream each answer in at the end of the thread, open
// citations in the side panel, send feedback.
// Plain JS, no build step. The server renders every piece of HTML; this file only moves it.
"use strict";

const form = document.getElementById("ask-form");
const questionBox = document.getElementById("question");
const askButton = document.getElementById("ask-button");
const thread = document.getElementById("thread");
const conversationField = document.getElementById("conversation");
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

// A new turn at the end of the thread, showing the question until its answer replaces it.
function startTurn(question) {
  const turn = document.createElement("article");
  turn.className = "card answer-card turn";
  const head = document.createElement("header");
  head.className = "answer-head";
  const asked = document.createElement("h2");
  asked.className = "asked";
  asked.textContent = question;
  head.append(asked);
  const searched = document.createElement("p");
  searched.className = "searched muted";
  searched.hidden = true;
  const live = document.createElement("p");
  live.className = "answer-text streaming";
  live.id = "live";
  turn.append(head, searched, live);
  thread.append(turn);
  turn.scrollIntoView({ block: "nearest" });
  return { turn, searched, live };
}

async function ask(event) {
  event.preventDefault();
  const question = questionBox.value.trim();
  if (!question) {
    questionBox.focus();
    return;
  }
  askButton.disabled = true;
  closePanel();
  setStatus(messages.thinking);
  const body = new FormData(form);
  const { turn, searched, live } = startTurn(question);
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body,
      headers: { "X-CSRFToken": csrfToken, Accept: "text/event-stream" },
    });
    if (!response.ok) {
      const failure = await response.json().catch(() => ({}));
      throw new Error(failure.error || messages.failed);
    }
    for await (const { name, data } of readEvents(response)) {
      if (name === "search") {
        searched.textContent = `${messages.searching} ${data.query}`;
        searched.hidden = false;
        setStatus(searched.textContent);
      } else if (name === "token") {
        if (!live.textContent) setStatus(messages.writing);
        live.textContent += data.text;
        if (live.textContent.endsWith(".") || live.textContent.endsWith("。")) setStatus(messages.checking);
      } else if (name === "answer") {
        turn.outerHTML = data.html;
        conversationField.value = data.conversation;
        addToHistory(data.conversation, data.history_entry);
        history.pushState({}, "", `/conversations/${data.conversation}`);
        questionBox.value = "";
        setStatus("");
      } else if (name === "error") {
        throw new Error(data.message);
      }
    }
  } catch (error) {
    setStatus("");
    live.remove();
    const alert = document.createElement("p");
    alert.className = "error";
    alert.setAttribute("role", "alert");
    alert.textContent = error.message || messages.failed;
    turn.append(alert);
  } finally {
    askButton.disabled = false;
  }
}

// The thread asked in moves to the top of the list (added there when it is new).
function addToHistory(conversation, html) {
  const list = document.getElementById("history-list");
  document.getElementById("history-empty")?.remove();
  list.querySelector(`[data-conversation="${conversation}"]`)?.remove();
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
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
  if (event.target.matches(".feedback-form")) {
    event.preventDefault();
    sendFeedback(event.target, event.submitter);
  }
});
document.getElementById("panel-close").addEventListener("click", closePanel);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") closePanel();
});
