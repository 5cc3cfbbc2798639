// The page's side of the service worker (sw.js): registration, a new version taking over at open, and the
// worker's questions (which chat is open here?) and requests (show this chat: a tapped notification).

const sw = 'serviceWorker' in navigator ? navigator.serviceWorker : null;

/** Ask the waiting worker to take over if this is the only page; resolves true when it does (a reload follows). */
function takeOver(waiting) {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    const timer = setTimeout(() => resolve(false), 2000);
    channel.port1.onmessage = (event) => {
      clearTimeout(timer);
      resolve(Boolean(event.data?.takingOver));
    };
    waiting.postMessage({ type: 'take-over-if-alone' }, [channel.port2]);
  });
}

/**
 * Before the app renders. Resolves false when the page is about to reload into a new version of the shell (then
 * nothing should render), true otherwise. Never rejects: without a worker the app still works, online.
 */
export async function startShell() {
  if (!sw) return true;
  try {
    const registration = await sw.getRegistration('/');
    if (registration?.waiting && sw.controller) {
      const reloading = new Promise((resolve) => sw.addEventListener('controllerchange', resolve, { once: true }));
      if (await takeOver(registration.waiting)) {
        await Promise.race([reloading, new Promise((resolve) => setTimeout(resolve, 3000))]);
        location.reload();
        return false;
      }
    }
  } catch {
    // No registration to look at (a private window, storage refused): go on without.
  }
  return true;
}

/**
 * Look for a newer sw.js. The browser does so at each navigation, but an installed app is mostly resumed, not
 * navigated, and a server just restarted may refuse the first requests for a second (its login gate checks the
 * password once): so also now, each time the app comes back to the screen, and again shortly after a failure.
 */
async function lookForUpdate(tries = 3) {
  try {
    await (await sw.getRegistration('/'))?.update();
  } catch {
    if (tries > 1) setTimeout(() => lookForUpdate(tries - 1), 2000);
  }
}

/** After the first render: register, look for a new version, and follow the worker's asks. */
export function registerShell() {
  if (!sw) return;
  sw.addEventListener('message', (event) => {
    if (event.data?.type === 'route') event.ports[0]?.postMessage(location.hash); // is that chat open here?
    if (event.data?.type !== 'open') return;
    const target = new URL(event.data.url, location.href);
    if (target.origin === location.origin && target.hash) location.hash = target.hash;
  });
  sw.startMessages();
  // Once the page has what it asked for first: installing fetches the whole shell, which should not queue before it.
  const register = () => sw.register('/sw.js', { scope: '/' }).then(
    (registration) => registration.active && lookForUpdate(),
    () => {
      // Refused (no HTTPS, storage off): the app works online all the same; Resources says what push needs.
    },
  );
  const idle = () => (window.requestIdleCallback ? requestIdleCallback(register, { timeout: 3000 }) : setTimeout(register, 1000));
  if (document.readyState === 'complete') idle();
  else window.addEventListener('load', idle, { once: true });
  document.addEventListener('visibilitychange', () => document.visibilityState === 'visible' && lookForUpdate());
}
