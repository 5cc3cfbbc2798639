// What the agent's replies cost: opencode records tokens and cost (in dollars, from the prices in its model config)
// on every assistant message; the sidecar sums them per chat (GET /admin/chats) and over 30 days (GET /admin/costs).

const KINDS = ['input', 'output', 'reasoning', 'cache_read', 'cache_write'];

/** Tokens and cost of a chat's messages ({info} objects, as opencode lists them), summed on the phone. */
export function usageOf(messages) {
  const sum = { cost: 0, tokens: Object.fromEntries(KINDS.map((kind) => [kind, 0])) };
  for (const { info } of messages) {
    if (info.role !== 'assistant') continue;
    const tokens = info.tokens || {};
    sum.cost += info.cost || 0;
    for (const kind of ['input', 'output', 'reasoning']) sum.tokens[kind] += tokens[kind] || 0;
    sum.tokens.cache_read += tokens.cache?.read || 0;
    sum.tokens.cache_write += tokens.cache?.write || 0;
  }
  return sum;
}

/** $0.0487 below a dollar (small turns are worth seeing), $12.35 above. */
export function money(dollars) {
  return `$${dollars.toFixed(dollars > 0 && dollars < 1 ? 4 : 2)}`;
}

function count(n) {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n);
}

/** "12.3k tokens · $0.0487", with the breakdown as a tooltip; empty when nothing was spent. */
export function usageText(usage) {
  const total = KINDS.reduce((n, kind) => n + (usage?.tokens?.[kind] || 0), 0);
  if (!total && !usage?.cost) return '';
  return `${count(total)} tokens · ${money(usage.cost || 0)}`;
}

/** The tokens of each kind in words, for a title attribute. */
export function usageDetail(usage) {
  return KINDS.map((kind) => `${kind.replace('_', ' ')} ${usage?.tokens?.[kind] || 0}`).join(', ');
}
