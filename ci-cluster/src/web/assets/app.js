// Airlock CI: live run pages. The page is complete without this file; with it,
// a run that is not final follows /runs/{id}/live (Server-Sent Events):
// new log lines are appended, job badges and the graph follow job states, and
// when the run ends the header, outputs and reports are refreshed.
//
// Untrusted text only ever reaches the page through textContent. The one
// exception is a log line's `html`, which the server escaped and
// colour-classed (web/ansi.rs) exactly as it does for the page itself.
(function () {
  'use strict';

  var root = document.getElementById('run');
  if (!root || !root.dataset.live) {
    return;
  }
  var liveUrl = root.dataset.live;
  var runId = root.dataset.run;
  var source = null;
  var finished = false;
  var retryMs = 1000;
  // Server time minus browser time: running durations tick from the
  // server's start times without trusting the browser's clock.
  var clockOffset = Number(root.dataset.now || Date.now()) - Date.now();

  // Mirrors layout::duration in web/layout.rs.
  function formatDuration(ms) {
    if (ms < 1000) {
      return ms + ' ms';
    }
    if (ms < 60000) {
      return (ms / 1000).toFixed(1) + ' s';
    }
    var pad = function (n) { return (n < 10 ? '0' : '') + n; };
    if (ms < 3600000) {
      return Math.floor(ms / 60000) + ' min ' + pad(Math.floor(ms / 1000) % 60) + ' s';
    }
    return Math.floor(ms / 3600000) + ' h ' + pad(Math.floor(ms / 60000) % 60) + ' min';
  }

  function tick() {
    var now = Date.now() + clockOffset;
    var ticking = document.querySelectorAll('[data-since]');
    for (var i = 0; i < ticking.length; i++) {
      var since = Number(ticking[i].dataset.since);
      ticking[i].textContent = (ticking[i].dataset.prefix || '') + formatDuration(Math.max(0, now - since)) +
        (ticking[i].dataset.suffix || '');
    }
  }

  function byData(selector, key, value) {
    var found = document.querySelectorAll(selector);
    for (var i = 0; i < found.length; i++) {
      if (found[i].dataset[key] === value) {
        return found[i];
      }
    }
    return null;
  }

  function badge(cls, icon, word) {
    var span = document.createElement('span');
    span.className = 'badge ' + cls;
    var i = document.createElement('span');
    i.className = 'icon';
    i.setAttribute('aria-hidden', 'true');
    i.textContent = icon;
    var w = document.createElement('span');
    w.className = 'word';
    w.textContent = word;
    span.appendChild(i);
    span.appendChild(document.createTextNode(' '));
    span.appendChild(w);
    return span;
  }

  function setStateClass(el, cls) {
    var kept = (el.getAttribute('class') || '').split(/\s+/).filter(function (c) {
      return c && c.indexOf('st-') !== 0;
    });
    kept.push(cls);
    el.setAttribute('class', kept.join(' '));
  }

  // The section of a job, created from the page's template if the page
  // was rendered before the job existed.
  function section(job) {
    var found = byData('details.job', 'job', job);
    if (found) {
      return found;
    }
    var template = document.getElementById('job-template');
    if (!template) {
      return null;
    }
    var created = template.content.firstElementChild.cloneNode(true);
    created.dataset.job = job;
    created.id = 'job-' + job;
    created.querySelector('.job-name').textContent = job;
    created.querySelector('ol.log').dataset.job = job;
    created.querySelector('a.raw').setAttribute('href', '/runs/' + runId + '/jobs/' + encodeURIComponent(job) + '/log.txt');
    template.parentNode.insertBefore(created, template);
    return created;
  }

  function cursors() {
    var logs = document.querySelectorAll('ol.log');
    var parts = [];
    for (var i = 0; i < logs.length; i++) {
      if (logs[i].dataset.job) {
        parts.push('after=' + encodeURIComponent((logs[i].dataset.seq || '0') + ':' + logs[i].dataset.job));
      }
    }
    return parts.join('&');
  }

  function onLog(event) {
    var d = JSON.parse(event.data);
    var details = section(d.job);
    if (!details) {
      return;
    }
    var list = details.querySelector('ol.log');
    if (d.seq <= Number(list.dataset.seq || 0)) {
      return; // already shown (a reconnect resent it)
    }
    var wrap = details.querySelector('.log-wrap');
    var atBottom = wrap.scrollHeight - wrap.scrollTop - wrap.clientHeight < 24;
    var anchor = 'job-' + d.job + '-L' + d.seq;
    var li = document.createElement('li');
    li.id = anchor;
    li.className = 'fresh' + (d['class'] ? ' ' + d['class'] : '');
    var ln = document.createElement('a');
    ln.className = 'ln';
    ln.href = '#' + anchor;
    ln.dataset.n = String(d.seq);
    ln.setAttribute('aria-label', 'line ' + d.seq);
    var tx = document.createElement('span');
    tx.className = 'tx';
    tx.innerHTML = d.html; // escaped by the server (web/ansi.rs)
    li.appendChild(ln);
    li.appendChild(tx);
    list.appendChild(li);
    list.dataset.seq = String(d.seq);
    details.querySelector('.lines').textContent = d.seq === 1 ? '1 line' : d.seq + ' lines';
    var placeholder = details.querySelector('.no-output');
    if (placeholder) {
      placeholder.remove();
    }
    if (atBottom) {
      wrap.scrollTop = wrap.scrollHeight;
    }
  }

  function onJob(event) {
    var d = JSON.parse(event.data);
    var details = section(d.job);
    if (details) {
      setStateClass(details, d['class']);
      var slot = details.querySelector('.job-badge');
      slot.replaceChildren(badge(d['class'], d.icon, d.word));
      var dur = details.querySelector('.dur');
      dur.textContent = d.duration;
      if (d.since) {
        dur.dataset.since = String(d.since);
      } else {
        delete dur.dataset.since;
      }
      details.querySelector('.detail').textContent = d.detail;
      if (d.open && !details.dataset.touched) {
        details.open = true;
      }
    }
    var node = byData('svg.dag g.node', 'job', d.job);
    if (node) {
      setStateClass(node, d['class']);
      var meta = node.querySelector('.n-meta');
      if (meta) {
        meta.textContent = d.meta;
        if (d.since) {
          meta.dataset.since = String(d.since);
          meta.dataset.prefix = d.word + ' · ';
        } else {
          delete meta.dataset.since;
        }
      }
      var icon = node.querySelector('.n-icon');
      if (icon) {
        icon.textContent = d.icon;
      }
      var title = node.querySelector('title');
      if (title) {
        title.textContent = d.job + ': ' + d.word;
      }
    }
  }

  // Re-renders the parts of the page that only change when a run ends.
  function refreshSections() {
    fetch(window.location.pathname, { credentials: 'same-origin' })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, 'text/html');
        var parts = document.querySelectorAll('[data-refresh]');
        for (var i = 0; i < parts.length; i++) {
          var replacement = parts[i].id && fresh.getElementById(parts[i].id);
          if (replacement) {
            parts[i].replaceWith(document.importNode(replacement, true));
          }
        }
      })
      .catch(function () { /* the static page stays; a reload shows the rest */ });
  }

  function onRun(event) {
    var d = JSON.parse(event.data);
    finished = true;
    if (source) {
      source.close();
    }
    var status = document.getElementById('run-status');
    if (status) {
      status.replaceChildren(badge(d['class'], d.icon, d.word));
    }
    delete root.dataset.live;
    var ticking = document.querySelectorAll('[data-since]');
    for (var i = 0; i < ticking.length; i++) {
      delete ticking[i].dataset.since;
    }
    refreshSections();
  }

  function connect() {
    var query = cursors();
    source = new EventSource(liveUrl + (query ? '?' + query : ''));
    source.addEventListener('log', onLog);
    source.addEventListener('job', onJob);
    source.addEventListener('run', onRun);
    source.addEventListener('open', function () {
      retryMs = 1000;
      root.dataset.stream = 'open';
    });
    source.onerror = function () {
      root.dataset.stream = 'closed';
      // Reconnect ourselves, with fresh cursors, instead of letting the
      // browser replay the first URL.
      source.close();
      if (!finished) {
        window.setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, 15000);
      }
    };
  }

  // Remember that a person opened or closed a job, and leave it that way.
  document.addEventListener('click', function (event) {
    var summary = event.target.closest && event.target.closest('details.job > summary');
    if (summary) {
      summary.parentNode.dataset.touched = '1';
    }
  });

  connect();
  window.setInterval(tick, 1000);
})();
