// What more than one resource's routes need: the "unknown group" answer, the hand-on view of a
// group, schemas for the common parameters, and the route config every route declares (who may
// call it: ./auth/guard.ts reads `access`).
import { Type as T } from '@sinclair/typebox';
import type { GroupLeadership } from '../cluster/leadership.ts';
import type { GroupDriver } from '../control/group-driver.ts';
import { BadRequestError, ErrorCodes } from '../errors.ts';
import { type RangedPoint, rangeSchema } from '../unit-contract.ts';
import type { Identity, RouteAccess } from './auth/roles.ts';
import { Name } from './request-schema.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route: public, or the least role (./auth/roles.ts). Routes without one need admin. */
    access?: RouteAccess;
  }
  interface FastifyRequest {
    /** Who sent the request (null on public routes and before the guard ran). */
    identity: Identity | null;
    /** The request failed its schema or the limiter: counted, not kept in the audit trail. */
    junk: boolean;
  }
}

export const GroupParams = T.Object({ id: Name });

/** A unit's commanded value with the contract's bounds (src/unit-contract.ts owns them). */
export function Ranged(point: RangedPoint) {
  const r = rangeSchema(point);
  return T.Number({ minimum: r.minimum, maximum: r.maximum });
}

export function notFound(id: string, groups: string[]): BadRequestError {
  return new BadRequestError(
    ErrorCodes.BAD_REQUEST,
    `unknown control group "${id}"`,
    [`one of: ${groups.join(', ')}`],
    404,
  );
}

/**
 * Never none, as the API says it: why this node's role last changed, why it does not drive a group
 * it leads, and when and why it last handed the group on (the leadership's record, else the driver's).
 */
export function handOnView(
  g: GroupLeadership,
  d: GroupDriver | undefined,
): {
  reason: string | null;
  problem: string | null;
  relinquished: { reason: string; atMs: number; cause?: string; epoch?: number } | null;
} {
  const own = d?.driveStatus;
  return {
    reason: g.reason ?? null,
    problem: own?.problem ?? null,
    relinquished: own?.relinquished ?? g.relinquished ?? null,
  };
}
