// Stepforge console: live logs and status of a running execution, confirm
// prompts, and the reload of lists that show running executions. Every text
// from the server is set with textContent, never parsed as markup.
"use strict";

(function () {
  var STATUS_POLL_MS = 2000;
  var MAX_LOG_LINES = 5000;
  var NEAR_BOTTOM_PX = 40;

  function reloadEvery() {
    var seconds = Number(document.body.getAttribute("data-refresh-s") || 0);
    if (seconds > 0) {
      window.setTimeout(function () {
        window.location.reload();
      }, seconds * 1000);
    }
  }

  function confirmForms() {
    var forms = document.querySelectorAll("form[data-confirm]");
    Array.prototype.forEach.call(forms, function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) {
          event.preventDefault();
        }
      });
    });
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    node.textContent = text;
    return node;
  }

  function LiveExecution(log) {
    this.log = log;
    this.state = document.getElementById("log-state");
    this.lastSequence = Number(log.getAttribute("data-next-sequence")) - 1;
    this.ended = false;
    this.source = null;
    this.poller = null;
  }

  LiveExecution.prototype.start = function () {
    var self = this;
    var url =
      this.log.getAttribute("data-events-url") +
      "?from=" +
      encodeURIComponent(String(this.lastSequence + 1));
    this.source = new window.EventSource(url);
    this.source.addEventListener("open", function () {
      self.setState("following live");
    });
    this.source.addEventListener("error", function () {
      if (!self.ended) {
        self.setState("reconnecting…");
      }
    });
    this.source.addEventListener("line", function (event) {
      self.append(JSON.parse(event.data));
    });
    this.source.addEventListener("end", function () {
      self.finish();
    });
    this.source.addEventListener("failure", function (event) {
      var data = JSON.parse(event.data);
      self.stop();
      if (data.signIn) {
        window.location.assign("/sign-in?notice=token-rejected");
        return;
      }
      self.setState("live logs stopped: " + data.message);
    });
    this.poller = window.setInterval(function () {
      self.pollStatus();
    }, STATUS_POLL_MS);
  };

  LiveExecution.prototype.append = function (line) {
    if (line.sequence <= this.lastSequence) {
      return;
    }
    this.lastSequence = line.sequence;
    var placeholder = document.getElementById("log-empty");
    if (placeholder) {
      placeholder.remove();
    }
    var log = this.log;
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < NEAR_BOTTOM_PX;
    var item = document.createElement("li");
    item.className = "stream-" + line.stream;
    item.setAttribute("data-sequence", String(line.sequence));
    var time = element("time", "", line.clock);
    time.setAttribute("datetime", line.time);
    item.appendChild(time);
    item.appendChild(element("span", "stream", line.stream));
    item.appendChild(element("span", "text", line.text));
    log.appendChild(item);
    while (log.children.length > MAX_LOG_LINES) {
      log.removeChild(log.firstElementChild);
    }
    if (atBottom) {
      log.scrollTop = log.scrollHeight;
    }
  };

  LiveExecution.prototype.pollStatus = function () {
    var self = this;
    var request = new window.XMLHttpRequest();
    request.open("GET", this.log.getAttribute("data-status-url"));
    request.setRequestHeader("Accept", "application/json");
    request.onload = function () {
      if (request.status === 401) {
        window.location.assign("/sign-in?notice=token-rejected");
        return;
      }
      if (request.status !== 200) {
        return;
      }
      self.showStatus(JSON.parse(request.responseText));
    };
    request.send();
  };

  LiveExecution.prototype.showStatus = function (summary) {
    var holder = document.getElementById("execution-status");
    if (holder) {
      var badge = holder.querySelector(".badge");
      badge.className = "badge status-" + summary.status.toLowerCase();
      badge.textContent = summary.status;
      holder.setAttribute("data-status", summary.status);
    }
    this.setText("execution-started", summary.started);
    this.setText("execution-ended", summary.ended);
    this.setText("execution-duration", summary.duration);
    if (!summary.active) {
      this.finish();
    }
  };

  LiveExecution.prototype.setText = function (id, text) {
    var node = document.getElementById(id);
    if (node) {
      node.textContent = text;
    }
  };

  LiveExecution.prototype.setState = function (text) {
    if (this.state) {
      this.state.textContent = text;
    }
  };

  LiveExecution.prototype.stop = function () {
    this.ended = true;
    if (this.source) {
      this.source.close();
    }
    if (this.poller) {
      window.clearInterval(this.poller);
    }
  };

  // The page as the server renders it for an ended execution has its
  // outputs, downloads and whole log, so the end is shown by a reload.
  LiveExecution.prototype.finish = function () {
    if (this.ended) {
      return;
    }
    this.stop();
    this.setState("the execution ended; reloading…");
    window.setTimeout(function () {
      window.location.reload();
    }, 800);
  };

  function followExecution() {
    var log = document.getElementById("log");
    if (!log || log.getAttribute("data-live") !== "true" || !window.EventSource) {
      return;
    }
    new LiveExecution(log).start();
  }

  document.addEventListener("DOMContentLoaded", function () {
    reloadEvery();
    confirmForms();
    followExecution();
  });
})();
