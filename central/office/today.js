// The office's /today page, live (docs/office.md "Today"): each message of /today/events
// carries the sections' HTML, rendered and escaped by the server; this swaps them in.
// Served by the app itself: the Content-Security-Policy allows no inline script.
"use strict";
(function () {
  const live = document.getElementById("today-live");
  function show(state, text) {
    live.dataset.state = state;
    live.textContent = text;
  }
  const source = new EventSource("/today/events");
  source.onopen = function () {
    show("live", "实时更新中");
  };
  source.onmessage = function (event) {
    const message = JSON.parse(event.data);
    for (const [name, html] of Object.entries(message.html)) {
      const section = document.getElementById("today-" + name);
      if (section) section.innerHTML = html;
    }
    document.body.dataset.received = String(Date.now());
    show("live", "实时更新中");
  };
  source.addEventListener("ended", function () {
    source.close();
    show("ended", "会话已结束，请重新登录后查看实时数据");
  });
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) {
      show("ended", "实时更新已停止，请刷新页面或重新登录");
    } else {
      show("reconnecting", "连接中断，正在重连…");
    }
  };
})();
