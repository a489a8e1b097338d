// Every module the process resolves from here on (ESM and require), by URL: import this first in a
// probe, before anything of ours, so what it then loads (node-opcua's files) is counted, not assumed.
import { registerHooks } from 'node:module';

export const loaded = new Set<string>();
registerHooks({
  resolve(specifier, context, nextResolve) {
    const r = nextResolve(specifier, context);
    loaded.add(r.url);
    return r;
  },
});
