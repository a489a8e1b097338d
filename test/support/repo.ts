// Where the repository is, and the simulator's command line as tests and benches start it. Only
// node:path here: benches that measure their own process's memory import it too.
import { join, resolve } from 'node:path';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');

/**
 * `node` arguments for the simulator on `sitePath`: every unit and gateway on a port the OS picks,
 * its API on a free port (it prints the address), a constant IT load. `extra` goes at the end.
 */
export function simArgs(
  sitePath: string,
  o: { logLevel?: 'warn' | 'error'; extra?: string[] } = {},
): string[] {
  return [
    join(REPO_ROOT, 'firmware-sim/main.ts'),
    '--config',
    sitePath,
    '--ephemeral-ports',
    '--port',
    '0',
    '--log-level',
    o.logLevel ?? 'warn',
    '--profile',
    'constant',
    ...(o.extra ?? []),
  ];
}
