// What the attacker-probe files send a node, and read back from it: a request by inject() with any
// method and headers, the cookie of a dashboard session, and the group's stored operator state.
import type { LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import { TEST_PASSWORD } from '../support/api-auth.ts';
import type { ApiNode } from './api-node.ts';

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'HEAD' | 'OPTIONS' | 'TRACE' | 'PATCH';

export function send(
  n: ApiNode,
  method: Method,
  url: string,
  headers: Record<string, string> = {},
  payload?: string | Buffer,
): Promise<LightMyRequestResponse> {
  return n.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) });
}

/** A dashboard session as the browser holds it: the cookie header to send. */
export async function session(n: ApiNode): Promise<string> {
  const r = await send(
    n,
    'POST',
    '/api/v1/auth/sign-in',
    { 'content-type': 'application/json', 'x-coolctl-request': '1' },
    JSON.stringify({ name: 'operator', password: TEST_PASSWORD }),
  );
  expect(r.statusCode).toBe(200);
  return String(r.headers['set-cookie']).split(';')[0]!;
}

/** The group's stored operator state as a viewer reads it: paused, and the units overridden. */
export async function operatorState(n: ApiNode): Promise<{ paused: boolean; overridden: string[] }> {
  const r = await send(n, 'GET', '/api/v1/groups/zone-1', n.as('viewer'));
  const op = (r.json() as { operator?: { paused?: boolean; overrides?: Record<string, unknown> } }).operator;
  return { paused: op?.paused === true, overridden: Object.keys(op?.overrides ?? {}) };
}

export async function pausedNow(n: ApiNode): Promise<boolean> {
  return (await operatorState(n)).paused;
}
