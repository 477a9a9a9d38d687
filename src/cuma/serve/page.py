"""The page at ``GET /``: one question, several profiles, their answers side by side.

Plain HTML and a little JavaScript, no build step. The page reads the adapter's profile fields from
``/v1/profile_fields``, asks ``/v1/chat/completions`` once per profile (greedy, so the difference
between columns is the profile's, not the sampler's) and, when the question lists lettered options
("A. ...", "B) ..."), draws each profile's probability over them from ``/v1/option_probabilities``.
Errors from the server are shown as messages on the page.
"""

PAGE_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cuma: one model, many people</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1.2em;
         color: #1d2430; background: #f6f7f9; }
  h1 { font-size: 1.4em; margin: 0 0 .2em; }
  .sub { color: #5b6472; margin: 0 0 1em; }
  textarea, input { font: inherit; box-sizing: border-box; width: 100%; padding: .4em .5em;
                    border: 1px solid #c8ced8; border-radius: 6px; background: #fff; }
  #question { min-height: 10em; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(230px, 1fr)); gap: .8em;
          margin: .8em 0; }
  .card { background: #fff; border: 1px solid #dde2ea; border-radius: 8px; padding: .8em; }
  .card h2 { font-size: 1em; margin: 0 0 .5em; display: flex; justify-content: space-between; }
  .fields { display: grid; grid-template-columns: 1fr 1fr; gap: .1em .6em; }
  .card label { display: block; font-size: .85em; color: #5b6472; margin-top: .25em; }
  .card input { padding: .25em .4em; }
  .row { display: flex; gap: .6em; align-items: center; flex-wrap: wrap; }
  button { font: inherit; padding: .45em 1em; border-radius: 6px; border: 1px solid #2f5fd0;
           background: #2f5fd0; color: #fff; cursor: pointer; }
  button.plain { background: #fff; color: #2f5fd0; }
  button.remove { border: none; background: none; color: #a33; padding: 0 .2em; }
  button:disabled { opacity: .5; cursor: wait; }
  #error { display: none; background: #fdecec; border: 1px solid #e4a5a5; color: #8a1f1f;
           border-radius: 8px; padding: .6em .8em; margin: .8em 0; }
  #error.shown { display: block; }
  .who { font-size: .85em; color: #5b6472; margin-bottom: .4em; }
  .answer { white-space: pre-wrap; min-height: 1.5em; }
  .result.failed .answer { color: #8a1f1f; }
  .bars { margin-top: .7em; }
  .bar { display: grid; grid-template-columns: 1.6em 1fr 3.4em; align-items: center; gap: .4em;
         font-size: .85em; margin: .15em 0; }
  .bar .track { background: #e8ebf0; border-radius: 4px; height: .9em; overflow: hidden; }
  .bar .fill { background: #2f5fd0; height: 100%; }
  .note { color: #5b6472; font-size: .9em; }
</style>
</head>
<body>
<h1>One model, many people</h1>
<p class="sub">Ask <b id="model">…</b> one question as different people: each profile routes the
adapter differently, and the answers appear side by side.</p>

<label for="question"><b>Question</b> (list options as "A. …" lines to see probabilities)</label>
<textarea id="question">How important is religion in your life?
A. Very important
B. Rather important
C. Not very important
D. Not at all important
Answer with the letter of one option.</textarea>

<div id="profiles" class="grid"></div>
<p id="no-profiles" class="note" hidden>This model reads no profile: every column gets the same
answer.</p>
<div class="row">
  <button id="add" class="plain" type="button">+ Add profile</button>
  <label for="max-tokens">max tokens</label>
  <input id="max-tokens" type="number" min="1" value="48" style="width: 6em">
  <button id="ask" type="button">Ask every profile</button>
</div>

<div id="error" role="alert"></div>
<div id="results" class="grid"></div>

<script>
"use strict";
const $ = (selector) => document.querySelector(selector);
let info = { model: "", reads_profiles: false, fields: [] };

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(message) {
  const box = $("#error");
  box.appendChild(element("div", "message", message));
  box.classList.add("shown");
}

function clearError() {
  $("#error").replaceChildren();
  $("#error").classList.remove("shown");
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON: reported below */ }
  if (!response.ok || data === null || data.error) {
    const message = data && data.error ? data.error.message : "no readable answer";
    throw new Error(`${message} (HTTP ${response.status})`);
  }
  return data;
}

function optionLetters(question) {
  const letters = [...question.matchAll(/^\s*([A-Z])[.)]\s+\S/gm)].map((match) => match[1]);
  return letters.length >= 2 && new Set(letters).size === letters.length ? letters : [];
}

function renumber() {
  const cards = [...document.querySelectorAll("#profiles .card")];
  cards.forEach((card, i) => {
    card.querySelector("h2 span").textContent = `Profile ${i + 1}`;
    card.querySelector(".remove").hidden = cards.length <= 2;
  });
}

function addProfile() {
  const card = element("div", "card profile");
  const title = element("h2");
  title.appendChild(element("span"));
  const remove = element("button", "remove", "✕");
  remove.type = "button";
  remove.title = "remove this profile";
  remove.addEventListener("click", () => { card.remove(); renumber(); });
  title.appendChild(remove);
  card.appendChild(title);
  if (info.fields.length) {
    const fields = element("div", "fields");
    for (const field of info.fields) {
      const label = element("label", "", field.replace(/_/g, " "));
      const input = element("input");
      input.dataset.field = field;
      input.placeholder = field.replace(/_/g, " ");
      label.appendChild(input);
      fields.appendChild(label);
    }
    card.appendChild(fields);
  } else {
    const label = element("label", "", "profile, as a sentence or “Field: value, …”");
    const text = element("textarea");
    text.rows = 3;
    label.appendChild(text);
    card.appendChild(label);
  }
  $("#profiles").appendChild(card);
  renumber();
}

function readProfile(card) {
  if (!info.fields.length) return card.querySelector("textarea").value.trim();
  const profile = {};
  for (const input of card.querySelectorAll("input[data-field]")) {
    if (input.value.trim()) profile[input.dataset.field] = input.value.trim();
  }
  return profile;
}

function describe(profile) {
  if (typeof profile === "string") return profile || "(empty profile)";
  const parts = Object.entries(profile).map(([field, value]) => `${field}: ${value}`);
  return parts.join(", ") || "(empty profile)";
}

function drawBars(column, options) {
  const bars = element("div", "bars");
  for (const { option, probability } of options) {
    const bar = element("div", "bar");
    bar.dataset.option = option;
    bar.appendChild(element("b", "", option));
    const track = element("div", "track");
    const fill = element("div", "fill");
    fill.style.width = `${(100 * probability).toFixed(1)}%`;
    track.appendChild(fill);
    bar.appendChild(track);
    bar.appendChild(element("span", "value", `${(100 * probability).toFixed(1)}%`));
    bars.appendChild(bar);
  }
  column.appendChild(bars);
}

async function askOne(index, profile, question, letters, maxTokens) {
  const column = element("div", "card result");
  column.appendChild(element("h2", "", info.reads_profiles ? `Profile ${index + 1}` : "Answer"));
  if (info.reads_profiles) column.appendChild(element("div", "who", describe(profile)));
  const answer = element("div", "answer", "…");
  column.appendChild(answer);
  $("#results").appendChild(column);
  const messages = [{ role: "user", content: question }];
  const extra = info.reads_profiles ? { profile } : {};
  try {
    const [chat, probabilities] = await Promise.all([
      api("/v1/chat/completions",
          { model: info.model, messages, max_tokens: maxTokens, temperature: 0, ...extra }),
      letters.length
        ? api("/v1/option_probabilities", { model: info.model, messages, options: letters, ...extra })
        : null,
    ]);
    answer.textContent = chat.choices[0].message.content;
    if (probabilities) drawBars(column, probabilities.options);
    column.classList.add("done");
  } catch (error) {
    answer.textContent = error.message;
    column.classList.add("failed");
    showError(`${info.reads_profiles ? `Profile ${index + 1}` : "Answer"}: ${error.message}`);
  }
}

async function ask() {
  clearError();
  $("#results").replaceChildren();
  const question = $("#question").value;
  const letters = optionLetters(question);
  const maxTokens = Number($("#max-tokens").value);
  const profiles = info.reads_profiles
    ? [...document.querySelectorAll("#profiles .card")].map(readProfile)
    : [null];
  $("#ask").disabled = true;
  try {
    await Promise.all(profiles.map((p, i) => askOne(i, p, question, letters, maxTokens)));
  } finally {
    $("#ask").disabled = false;
  }
}

async function start() {
  try {
    info = await api("/v1/profile_fields");
  } catch (error) {
    showError(`cannot read the model's profile fields: ${error.message}`);
    return;
  }
  $("#model").textContent = info.model;
  if (info.reads_profiles) {
    addProfile();
    addProfile();
  } else {
    $("#add").hidden = true;
    $("#no-profiles").hidden = false;
  }
  $("#add").addEventListener("click", addProfile);
  $("#ask").addEventListener("click", ask);
  document.body.dataset.ready = "true";
}

start();
</script>
</body>
</html>
"""
