// The playground: chats with the gateway's /v1/chat/completions using a key of the project,
// streaming the answer. The key's token lives in this tab's sessionStorage only.
(function () {
  "use strict";
  var root = document.getElementById("playground");
  var form = document.getElementById("chat-form");
  if (!root || !form) return;

  var storageKey = "llmgw-playground:" + root.dataset.project;
  var transcript = document.getElementById("transcript");
  var status = document.getElementById("pg-status");
  var send = document.getElementById("pg-send");
  var stop = document.getElementById("pg-stop");
  var history = [];
  var controller = null;

  function csrfToken() {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  async function playgroundKey(fresh) {
    var token = fresh ? null : sessionStorage.getItem(storageKey);
    if (token) return token;
    var response = await fetch(root.dataset.keyUrl, {
      method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrfToken() },
    });
    if (!response.ok) throw new Error("could not create a playground key (HTTP " + response.status + ")");
    var body = await response.json();
    sessionStorage.setItem(storageKey, body.token);
    return body.token;
  }

  function bubble(role, text) {
    var item = document.createElement("li");
    item.className = "msg " + role;
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Assistant";
    var content = document.createElement("div");
    content.className = "content";
    content.textContent = text || "";
    item.appendChild(who);
    item.appendChild(content);
    transcript.appendChild(item);
    item.scrollIntoView({ block: "nearest" });
    return item;
  }

  function addStats(item, parts) {
    var stats = document.createElement("p");
    stats.className = "stats muted small";
    stats.textContent = parts.join(" · ");
    item.appendChild(stats);
    return stats;
  }

  async function loggedCost(requestId, stats) {
    if (!requestId) return;
    var url = root.dataset.loggedUrl.replace("REQUEST_ID", encodeURIComponent(requestId));
    var cost = document.createElement("span");
    cost.className = "cost";
    cost.textContent = " · cost: logging…";
    stats.appendChild(cost);
    for (var attempt = 0; attempt < 30; attempt++) {
      await new Promise(function (resolve) { setTimeout(resolve, 500); });
      var response = await fetch(url, { credentials: "same-origin" });
      if (response.status === 200) {
        var html = new DOMParser().parseFromString(await response.text(), "text/html");
        cost.textContent = " · " + html.body.textContent.trim();
        return;
      }
    }
    cost.textContent = " · cost: see Logs";
  }

  function errorText(body, status) {
    if (body && body.error) return body.error.message || JSON.stringify(body.error);
    return "HTTP " + status;
  }

  async function call(token, payload) {
    controller = new AbortController();
    return fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
      body: JSON.stringify(payload),
      signal: controller.signal,
    });
  }

  async function ask(prompt) {
    var custom = form.querySelector("[name=custom_model]");
    var model = (custom && custom.value.trim()) || form.querySelector("[name=model]").value;
    var system = form.querySelector("[name=system]").value.trim();
    history.push({ role: "user", content: prompt });
    bubble("user", prompt);
    var answer = bubble("assistant", "");
    var content = answer.querySelector(".content");
    answer.classList.add("streaming");
    var messages = (system ? [{ role: "system", content: system }] : []).concat(history);
    var payload = { model: model, messages: messages, stream: true, stream_options: { include_usage: true } };
    var started = performance.now();
    var firstToken = null;
    var usage = null;
    var text = "";
    var failed = null;

    var token = await playgroundKey(false);
    var response = await call(token, payload);
    if (response.status === 401) {
      var refused = await response.json().catch(function () { return null; });
      if (refused && refused.error && refused.error.code === "invalid_api_key") {
        token = await playgroundKey(true);  // the stored key was replaced or deleted
        response = await call(token, payload);
      } else {
        failed = errorText(refused, 401);
      }
    }
    if (!failed && !response.ok) {
      failed = errorText(await response.json().catch(function () { return null; }), response.status);
    }
    if (!failed) {
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      reading: while (true) {
        var chunk = await reader.read();
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true });
        var events = buffer.split(/\r?\n\r?\n/);
        buffer = events.pop();
        for (var i = 0; i < events.length; i++) {
          var lines = events[i].split(/\r?\n/);
          for (var j = 0; j < lines.length; j++) {
            if (lines[j].indexOf("data:") !== 0) continue;
            var data = lines[j].slice(5).trim();
            if (data === "[DONE]") break reading;
            var event;
            try { event = JSON.parse(data); } catch (e) { continue; }
            if (event.error) { failed = errorText(event, 200); break reading; }
            if (event.usage) usage = event.usage;
            var delta = event.choices && event.choices[0] && event.choices[0].delta;
            if (delta && delta.content) {
              if (firstToken === null) firstToken = performance.now();
              text += delta.content;
              content.textContent = text;
            }
          }
        }
      }
    }
    answer.classList.remove("streaming");
    if (failed) {
      answer.classList.add("error");
      content.textContent = (text ? text + "\n\n" : "") + "Error: " + failed;
      history.pop();
      return;
    }
    history.push({ role: "assistant", content: text });
    var total = Math.round(performance.now() - started);
    var parts = [model + " via " + (response.headers.get("x-gateway-provider") || "?")];
    if (usage) parts.push(usage.prompt_tokens + " prompt + " + usage.completion_tokens + " completion tokens");
    if (firstToken !== null) parts.push("first token " + Math.round(firstToken - started) + " ms");
    parts.push("total " + total + " ms");
    if (response.headers.get("x-gateway-cache") === "HIT") parts.push("cached");
    var stats = addStats(answer, parts);
    loggedCost(response.headers.get("x-request-id"), stats);
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    var input = form.querySelector("[name=prompt]");
    var prompt = input.value.trim();
    if (!prompt) return;
    input.value = "";
    send.disabled = true;
    stop.hidden = false;
    status.textContent = "Waiting for the answer…";
    try {
      await ask(prompt);
      status.textContent = "";
    } catch (e) {
      status.textContent = e.name === "AbortError" ? "Stopped." : "Error: " + e.message;
    } finally {
      send.disabled = false;
      stop.hidden = true;
      controller = null;
      input.focus();
    }
  });
  form.querySelector("[name=prompt]").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  stop.addEventListener("click", function () { if (controller) controller.abort(); });
  document.getElementById("pg-clear").addEventListener("click", function () {
    history = [];
    transcript.textContent = "";
  });
})();
