// Who may do what through the API. Each role includes the ones below it: a viewer reads; an operator
// also steers (commands, pause/resume, overrides, switchover, alarm acknowledgement); an admin also
// manages users, tokens and configuration. `public` routes (health) need no identity at all.
export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];
export type RouteAccess = Role | 'public';

export function isRole(x: unknown): x is Role {
  return typeof x === 'string' && (ROLES as readonly string[]).includes(x);
}

export function roleAllows(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

export interface Identity {
  user: string;
  role: Role;
  /** How it was proven: an API token or a dashboard session (a cookie). */
  via: 'token' | 'session';
  tokenId: string;
}
