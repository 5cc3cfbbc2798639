// The model and agent a message goes with, for New chat and the chat's composer: what opencode offers
// (GET /admin/agent-options, asked once per page load), the last choice remembered on this device, and a plain
// sentence when no model provider of one's own is set up.

import { get } from '../api.js';
import { errorBox, h, put } from '../ui.js';

const CHOICE = 'mecodes.choice';
let asked = null;

/** The options, fetched once per page load (the sidecar keeps them until the stack restarts). */
export function agentOptions() {
  asked ??= get('/admin/agent-options').catch((error) => {
    asked = null; // asked again next time
    throw error;
  });
  return asked;
}

function remembered() {
  try {
    return JSON.parse(localStorage.getItem(CHOICE) || '{}') || {};
  } catch {
    return {};
  }
}

/** The sentence for a stack without a provider of the person's own. */
export function noProviderText(options) {
  const what = 'Set your provider’s key as a secret (for OpenRouter: fly secrets set OPENROUTER_API_KEY=…), then restart; the README says how.';
  return options.models.length
    ? `No model provider of your own is set up, so only opencode’s free models are offered. ${what}`
    : `No model provider is set up, so the agent cannot answer. ${what}`;
}

/** agentPicker(id, ctx) → {node, note, choice(), follow({model, agent}), takesImages(), maxImageBytes()}; `note`
 * says when no provider is set up or the models could not be listed. Shown first:
 * the chat's own model and agent (`follow`), else the last pick on this device, else opencode's defaults; a pick
 * is remembered on this device. */
export function agentPicker(id, ctx) {
  const model = h('select', { id: `${id}-model`, 'aria-label': 'Model' });
  const agent = h('select', { id: `${id}-agent`, 'aria-label': 'Agent' });
  const note = h('div', { 'aria-live': 'polite' });
  const node = h('div', { class: 'picker-row', hidden: true }, model, agent);
  let options = null;
  let touched = false;
  let followed = {};

  function select(el, value) {
    if ([...el.options].some((o) => o.value === value)) el.value = value;
  }

  function fill(found) {
    options = found;
    const groups = new Map();
    for (const m of found.models) groups.set(m.provider, [...(groups.get(m.provider) || []), m]);
    put(model, [...groups].map(([provider, models]) => h('optgroup', { label: provider }, models.map((m) => h('option', { value: m.id }, m.name)))));
    put(agent, found.agents.map((a) => h('option', { value: a.name, title: a.description }, a.name)));
    const last = remembered();
    for (const chosen of [{ model: found.default_model, agent: found.default_agent }, last, followed]) {
      select(model, chosen.model);
      select(agent, chosen.agent);
    }
    model.disabled = !found.models.length;
    node.hidden = false;
    put(note, found.providers_configured ? null : h('p', { class: 'warning', role: 'status' }, noProviderText(found)));
  }

  const save = () => {
    touched = true;
    localStorage.setItem(CHOICE, JSON.stringify({ model: model.value, agent: agent.value }));
  };
  model.addEventListener('change', save);
  agent.addEventListener('change', save);

  agentOptions().then(fill, (error) => {
    if (!ctx.signal.aborted) put(note, errorBox(error, 'Could not list the models'));
  });

  return {
    node,
    note,
    /** {model, agent} to send: nothing when the options could not be listed (opencode then uses its own). */
    choice: () => (options ? { model: model.value || undefined, agent: agent.value || undefined } : {}),
    follow(chosen) {
      if (touched) return;
      followed = chosen;
      select(model, chosen.model);
      select(agent, chosen.agent);
    },
    takesImages: () => !options || Boolean(options.models.find((m) => m.id === model.value)?.images),
    maxImageBytes: () => options?.attachments_max_bytes,
  };
}
