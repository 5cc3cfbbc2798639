// Server-sent events from opencode that survive a sleeping phone or a dropped network: on every (re)connect
// `onOpen` runs (the view reloads what it shows), and a silent stream is replaced. opencode sends a
// heartbeat every 10 s, so a stream quiet for much longer than that is dead even if the browser thinks not.

const STALE_MS = 35000;

/**
 * stream(url, {onEvent(event), onOpen(), onState(state)}) → {close(), reconnect()}
 * `state` is 'connecting', 'live' or 'reconnecting'. Events are opencode's JSON objects ({type, properties}).
 */
export function stream(url, { onEvent, onOpen, onState }) {
  let source = null;
  let closed = false;
  let attempt = 0;
  let timer = null;
  let lastSeen = Date.now();

  const setState = (state) => onState?.(state);

  function connect() {
    clearTimeout(timer);
    source?.close();
    if (closed) return;
    setState(attempt === 0 ? 'connecting' : 'reconnecting');
    lastSeen = Date.now();
    const current = new EventSource(url);
    source = current;
    current.onmessage = (message) => {
      if (current !== source) return;
      lastSeen = Date.now();
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event?.payload && !event.type) event = { ...event.payload, directory: event.directory }; // /global/event
      if (event.type === 'server.connected') {
        attempt = 0;
        setState('live');
        onOpen?.();
      }
      onEvent?.(event);
    };
    current.onerror = () => {
      if (current !== source || closed) return;
      current.close(); // we decide when to come back (and reload first), not the browser
      attempt += 1;
      setState('reconnecting');
      timer = setTimeout(connect, Math.min(30000, 500 * 2 ** Math.min(attempt, 6)));
    };
  }

  function reconnect() {
    if (closed) return;
    attempt = Math.max(attempt, 1);
    connect();
  }

  const stale = () => Date.now() - lastSeen > STALE_MS;
  const visibility = () => document.visibilityState === 'visible' && stale() && reconnect();
  const online = () => reconnect();
  const watchdog = setInterval(() => document.visibilityState === 'visible' && stale() && reconnect(), 5000);
  document.addEventListener('visibilitychange', visibility);
  window.addEventListener('online', online);
  connect();

  return {
    reconnect,
    close() {
      closed = true;
      clearTimeout(timer);
      clearInterval(watchdog);
      document.removeEventListener('visibilitychange', visibility);
      window.removeEventListener('online', online);
      source?.close();
    },
  };
}
