// Resources → Notifications: push on this device (enable, which events, a test, disable), the devices registered,
// and the last notifications sent with their failures. Where the browser cannot be told, a sentence says what to do.

import { ApiError, del, get, jobFailure, pollJob, post, request } from '../api.js';
import { badge, confirmDialog, errorBox, h, isAbort, plural, put, when } from '../ui.js';

const BASE = '/admin/notifications';
const KINDS = [
  ['finished', 'A chat finished'],
  ['failed', 'A reply failed'],
  ['interrupted', 'A turn was interrupted'],
  ['needs-input', 'A chat needs an answer'],
];
const DEVICE = 'mecodes.pushDevice'; // the server's id of this device's subscription

const isApple = () => /iPhone|iPad|iPod/.test(navigator.userAgent) || (navigator.platform === 'MacIntel' && navigator.maxTouchPoints > 1);
const installed = () => matchMedia('(display-mode: standalone)').matches || navigator.standalone === true;

/** What keeps this browser from push, in words; null when nothing does. */
function obstacle() {
  if (!window.isSecureContext) return 'Notifications need the app opened over HTTPS (or on this machine as localhost).';
  if (isApple() && !installed()) {
    return 'On an iPhone or iPad, notifications work once mecodes is on the home screen: in Safari, Share → Add to Home Screen, then open mecodes from there and enable them here (iOS 16.4 or later).';
  }
  if (!('serviceWorker' in navigator) || !('PushManager' in window) || !('Notification' in window)) {
    return 'This browser cannot receive push notifications. Use a current Chrome, Edge, Firefox or Safari, or get the events by another channel (MECODES_NOTIFY_URLS, see the README).';
  }
  if (Notification.permission === 'denied') {
    return "Notifications are blocked for this site in the browser's settings. Allow them there (the site's settings → Notifications), then come back here.";
  }
  return null;
}

/** "Chrome on Android": a starting point for the device's name, which the person can change. */
function guessName() {
  const ua = navigator.userAgent;
  const system = [['iPhone', 'iPhone'], ['iPad', 'iPad'], ['Android', 'Android'], ['Mac OS X', 'Mac'], ['Windows', 'Windows'], ['Linux', 'Linux']].find(([mark]) => ua.includes(mark));
  const browser = [['Edg/', 'Edge'], ['Firefox/', 'Firefox'], ['Chrome/', 'Chrome'], ['Safari/', 'Safari']].find(([mark]) => ua.includes(mark));
  return `${browser ? browser[1] : 'Browser'} on ${system ? system[1] : 'this device'}`;
}

function keyBytes(base64url) {
  const text = atob(base64url.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

async function registration() {
  const found = await navigator.serviceWorker.getRegistration('/');
  if (!found) throw new Error("The app's service worker is not running in this browser, and push needs it. Reload the page, then try again.");
  return found;
}

/** This device's push subscription, made (or found again) with the server's key. */
async function subscribe(key) {
  const { pushManager } = await registration();
  const options = { userVisibleOnly: true, applicationServerKey: keyBytes(key) };
  try {
    return await pushManager.subscribe(options);
  } catch (error) {
    if (error.name !== 'InvalidStateError') throw error;
    await (await pushManager.getSubscription())?.unsubscribe(); // made with another key: start again
    return pushManager.subscribe(options);
  }
}

function cannotSubscribe(error) {
  return `This browser could not subscribe to its push service (${error.message || error.name}). A private window, some privacy-minded browsers and headless test browsers have none, so they cannot be told: use a normal window of a current Chrome, Edge, Firefox or Safari.`;
}

/** settings(body, signal) → {load()}: fills `body` (a Resources section); load() reads the server again. */
export function settings(body, signal) {
  const here = h('div', { class: 'notify-here', 'aria-live': 'polite' });
  const out = h('div', { class: 'item-out', 'aria-live': 'polite' });
  const devices = h('div', { class: 'notify-devices' }, h('p', { class: 'muted' }, 'Loading…'));
  const sent = h('div', { class: 'notify-sent' }, h('p', { class: 'muted' }, 'Loading…'));
  put(body, h('h3', {}, 'On this device'), here, out, h('h3', {}, 'Devices'), devices, h('h3', {}, 'Last notifications sent'), sent);
  let shown = null; // what `here` shows, so a refresh leaves a form being filled in alone

  const say = (...content) => put(out, ...content);
  const fail = (prefix) => (error) => !isAbort(error) && say(errorBox(error, prefix));

  function eventChoices(chosen, onChange) {
    return h(
      'fieldset',
      { class: 'notify-kinds' },
      h('legend', {}, 'Tell me when'),
      KINDS.map(([kind, label]) => h(
        'label',
        { class: 'notify-kind' },
        h('input', { type: 'checkbox', value: kind, checked: chosen.includes(kind), onchange: onChange }),
        h('span', {}, label),
      )),
    );
  }
  const checked = (fieldset) => [...fieldset.querySelectorAll('input:checked')].map((input) => input.value);

  function showOff() {
    const name = h('input', { id: 'notify-name', value: guessName(), maxlength: '60', autocomplete: 'off' });
    const kinds = eventChoices(KINDS.map(([kind]) => kind));
    const enable = h('button', { type: 'button', class: 'button primary' }, 'Enable on this device');
    enable.addEventListener('click', () => {
      say();
      return enableHere(enable, name.value.trim(), checked(kinds));
    });
    put(
      here,
      h('p', {}, 'This device is not told about chats yet.'),
      h('label', { for: 'notify-name', class: 'notify-label' }, 'Name of this device'),
      name,
      kinds,
      h('div', { class: 'row' }, enable),
    );
  }

  function showOn(device) {
    const patch = (change) => request('PATCH', `${BASE}/subscriptions/${encodeURIComponent(device.id)}`, change, { signal });
    const name = h('input', { id: 'notify-name', value: device.name || '', maxlength: '60', autocomplete: 'off' });
    name.addEventListener('change', () => patch({ name: name.value.trim() }).then(() => say(h('p', { class: 'notice' }, 'Name saved.'))).catch(fail('Name not saved')));
    const kinds = eventChoices(device.events || [], () => {
      const events = checked(kinds);
      patch({ events }).then(() => say(h('p', { class: 'notice' }, events.length ? 'Saved.' : 'Saved: this device is told about nothing but tests.'))).catch(fail('Not saved'));
    });
    const test = h('button', { type: 'button', class: 'button', onclick: () => sendTest(test, device.id) }, 'Send me a test notification');
    const disable = h('button', { type: 'button', class: 'button danger', onclick: () => disableHere(disable, device.id) }, 'Disable on this device');
    put(
      here,
      h('p', {}, badge('on', 'idle'), ' This device is told about chats.'),
      h('label', { for: 'notify-name', class: 'notify-label' }, 'Name of this device'),
      name,
      kinds,
      h('div', { class: 'row' }, test, disable),
    );
  }

  async function enableHere(button, name, events) {
    button.disabled = true;
    try {
      if ((await Notification.requestPermission()) !== 'granted') {
        say(h('p', { class: 'warning' }, obstacle() || 'Notifications were not allowed. Enable again to be asked once more.'));
        return;
      }
      const { public_key: key } = await get(`${BASE}/key`, { signal });
      let subscription;
      try {
        subscription = await subscribe(key);
      } catch (error) {
        say(h('p', { class: 'warning notify-cannot' }, cannotSubscribe(error)));
        return;
      }
      const device = await post(`${BASE}/subscriptions`, { subscription: subscription.toJSON(), name: name || guessName(), events }, { signal });
      localStorage.setItem(DEVICE, device.id);
      say(h('p', { class: 'notice' }, 'Enabled. Send a test notification to see one arrive.'));
      await refresh();
    } catch (error) {
      fail('Not enabled')(error);
    } finally {
      button.disabled = false;
    }
  }

  async function disableHere(button, id) {
    button.disabled = true;
    try {
      await (await (await registration()).pushManager.getSubscription())?.unsubscribe();
      await forget(id);
      say(h('p', { class: 'notice' }, 'Disabled: this device is no longer told.'));
    } catch (error) {
      fail('Not disabled')(error);
    } finally {
      button.disabled = false;
    }
  }

  async function forget(id) {
    try {
      await del(`${BASE}/subscriptions/${encodeURIComponent(id)}`, { signal });
    } catch (error) {
      if (error.status !== 404) throw error; // already gone (the push service dropped it): the same outcome
    }
    if (localStorage.getItem(DEVICE) === id) localStorage.removeItem(DEVICE);
    await refresh();
  }

  async function sendTest(button, id) {
    button.disabled = true;
    try {
      const job = await post(`${BASE}/test`, { subscription_id: id }, { signal });
      const done = await pollJob(job, (j) => say(h('p', { class: 'muted' }, `Sending: ${j.progress?.step || j.status}…`)), signal);
      if (done.status !== 'finished') throw new ApiError(jobFailure(done));
      const failed = (done.result?.targets || []).filter((t) => t.outcome !== 'sent');
      say(failed.length ? h('p', { class: 'warning' }, `Not delivered: ${failed.map(outcomeText).join('; ')}`) : h('p', { class: 'notice' }, 'Sent: it should show on this device in a moment.'));
      await refresh();
    } catch (error) {
      fail('Test not sent')(error);
    } finally {
      button.disabled = false;
    }
  }

  // ---- the lists

  function deviceItem(device, mine) {
    const remove = h('button', { type: 'button', class: 'button danger', 'aria-label': `Delete device ${device.name}` }, 'Delete');
    remove.addEventListener('click', async () => {
      const ok = await confirmDialog({ title: `Delete the device ${device.name}?`, message: 'It is no longer told about chats. It can be enabled again from that device.', confirm: 'Delete', danger: true });
      if (ok) forget(device.id).catch(fail('Not deleted'));
    });
    return h(
      'li',
      { class: 'item', 'data-device': device.id },
      h('span', { class: 'item-title' }, device.name, mine ? [' ', badge('this device', 'busy')] : null),
      h('span', { class: 'item-meta' }, `${(device.events || []).join(', ') || 'tests only'} · via ${device.endpoint_host} · since `, when(device.created_at)),
      h('div', { class: 'row' }, remove),
    );
  }

  function outcomeText(t) {
    if (t.outcome === 'sent') return `sent to ${t.name}`;
    if (t.outcome === 'gone') return `${t.name}: gone (the push service forgot it), removed`;
    return `${t.name}: failed${t.status ? ` (${t.status})` : ''}${t.reason ? `: ${t.reason}` : ''}${t.attempts > 1 ? ` after ${plural(t.attempts, 'try', 'tries')}` : ''}`;
  }

  function sentItem(entry) {
    const targets = entry.targets || [];
    const failures = targets.filter((t) => t.outcome !== 'sent');
    return h(
      'li',
      { class: 'item', 'data-sent': entry.key },
      h('span', { class: 'item-title' }, badge(entry.kind, failures.length ? 'error' : 'idle'), ' ', entry.title, ' ', h('span', { class: 'muted' }, when(entry.at))),
      entry.body ? h('span', { class: 'item-meta' }, entry.body) : null,
      targets.length ? null : h('span', { class: 'item-meta' }, 'No device or channel wanted it.'),
      targets.map((t) => h('span', { class: failures.includes(t) ? 'item-meta error-text' : 'item-meta' }, outcomeText(t))),
    );
  }

  /** Read the server again; `force` redraws this device's part even while its name is being typed. */
  async function refresh(force = true) {
    const problem = obstacle();
    const [listed, recent, subscription] = await Promise.all([
      get(`${BASE}/subscriptions`, { signal }),
      get(BASE, { signal }),
      problem ? null : navigator.serviceWorker.getRegistration('/').then((r) => r?.pushManager.getSubscription() ?? null),
    ]);
    const list = listed.subscriptions;
    const mine = subscription ? list.find((d) => d.id === localStorage.getItem(DEVICE)) : null;
    const state = problem ? `no:${problem}` : mine ? `on:${mine.id}:${mine.name}:${mine.events}` : 'off';
    const typing = document.activeElement?.id === 'notify-name';
    if (state !== shown && (force || !typing)) {
      shown = state;
      if (problem) put(here, h('p', { class: 'warning notify-cannot' }, problem));
      else if (mine) showOn(mine);
      else showOff();
    }
    put(devices, list.length ? h('ul', { class: 'list' }, list.map((d) => deviceItem(d, d === mine))) : h('p', { class: 'empty' }, 'No device is registered.'));
    const entries = recent.notifications;
    put(sent, entries.length ? h('ul', { class: 'list' }, entries.slice(0, 20).map(sentItem)) : h('p', { class: 'empty' }, 'No notification sent yet.'));
  }

  return {
    load: () => refresh(false).catch((error) => !isAbort(error) && put(devices, errorBox(error, 'Could not load this'))),
  };
}
