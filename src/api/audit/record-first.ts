// Operator actions into the audit trail, recorded first: a state-changing request that passed the
// guard (identity, role, cross-site), its schema and the limiter has its entry stored in etcd
// (outcome pending) before its handler runs, and completed with its answer before the answer
// leaves. When etcd does not take the entry within its call deadline, the action is not carried
// out: 503 COOLCTL_E_AUDIT_UNAVAILABLE (COOLCTL_E_ETCD_NO_SPACE, with the remedy, when etcd refused it
// for lack of space), counted and logged. So nothing steers cooling unrecorded,
// and nothing refused before the limiter (junk, floods) ever reaches etcd. Register it after
// @fastify/rate-limit: its per-route preHandler must come after the limiter's (../app.ts).
// Public routes (sign-in) have no identity before their handler: recorded after, with the answer.
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { ETCD_NO_SPACE_REMEDY, isEtcdNoSpace } from '../../cluster/errors.ts';
import { BadRequestError, ErrorCodes } from '../../errors.ts';
import { changesState } from '../auth/guard.ts';
import {
  type ActionIntent,
  AUDIT_REFUSED_STATUS,
  type AuditTrail,
  AuditUnavailableError,
  type OpenEntry,
} from './audit-trail.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The entry this request's action was recorded under before it ran (null: none yet). */
    auditEntry: OpenEntry | null;
  }
}

export interface RecordFirstOptions {
  node: string;
  audit: AuditTrail;
}

/** Who asked what of which target, from the request as the guard and schema let it through. */
function intentOf(req: FastifyRequest, node: string): ActionIntent {
  const route = req.routeOptions.url ?? req.url;
  const params = (req.params ?? {}) as Record<string, string | undefined>;
  return {
    action:
      route
        .split('/')
        .filter((s) => s && !s.startsWith(':'))
        .at(-1) ?? route,
    method: req.method,
    path: req.url.split('?')[0] ?? req.url,
    group: params.id ?? null,
    target: params.ahu ?? params.name ?? params.tokenId ?? params.alarm ?? null,
    // A body-less request is checked as `{}` (../app.ts): either way it carried nothing.
    params: isEmpty(req.body) ? null : req.body,
    user: req.identity!.user,
    role: req.identity!.role,
    clientIp: req.ip,
    node,
  };
}

/** The answer as the trail keeps it: its status, and its stable code when it refused. */
function outcomeOf(reply: FastifyReply, payload: unknown) {
  let error: { code: string; message: string } | null = null;
  if (reply.statusCode >= 400 && typeof payload === 'string') {
    try {
      const b = JSON.parse(payload) as { error?: unknown; message?: unknown };
      error = { code: String(b.error ?? 'unknown'), message: String(b.message ?? '') };
    } catch {
      error = { code: 'unknown', message: payload.slice(0, 200) };
    }
  }
  return { status: reply.statusCode, error };
}

async function recordFirstPlugin(app: FastifyInstance, opts: RecordFirstOptions): Promise<void> {
  const { audit, node } = opts;
  app.decorateRequest('auditEntry', null);

  const recordFirst: preHandlerAsyncHookHandler = async (req, reply) => {
    if (!changesState(req.method) || !req.identity) return;
    try {
      req.auditEntry = await audit.begin(intentOf(req, node));
    } catch (err) {
      if (!(err instanceof AuditUnavailableError)) throw err;
      // Its refusal is already the entry's outcome, on its way to etcd: onSend leaves it be.
      req.auditEntry = err.entry;
      reply.header('retry-after', '5');
      // Not a moment's outage: no other try helps until an operator frees space in etcd.
      if (isEtcdNoSpace(err))
        throw new BadRequestError(
          ErrorCodes.ETCD_NO_SPACE,
          `${req.method} ${req.routeOptions.url}: not carried out: etcd refuses writes (database space exceeded), so its audit entry could not be stored, and no action runs unrecorded`,
          [
            ETCD_NO_SPACE_REMEDY,
            'then try again (GET /api/v1/alarms shows etcd-no-space until etcd takes writes)',
          ],
          AUDIT_REFUSED_STATUS,
        );
      throw new BadRequestError(
        ErrorCodes.AUDIT_UNAVAILABLE,
        `${req.method} ${req.routeOptions.url}: not carried out: the audit trail (etcd) did not store its entry, and no action runs unrecorded`,
        [err.message, 'try again once etcd takes writes (coolctl status; etcdctl endpoint health)'],
        AUDIT_REFUSED_STATUS,
      );
    }
  };
  // After the limiter's own onRoute hook (registered before this plugin): its preHandler runs first.
  app.addHook('onRoute', (r) => {
    const methods = Array.isArray(r.method) ? r.method : [r.method];
    if (!methods.some(changesState) || r.config?.access === 'public') return;
    r.preHandler = [...(r.preHandler === undefined ? [] : [r.preHandler].flat()), recordFirst] as never;
  });

  app.addHook('onSend', async (req, reply, payload) => {
    // An entry written first is always completed, whatever the answer (a refusal after it included).
    if (req.auditEntry) {
      await audit.finish(req.auditEntry, outcomeOf(reply, payload));
      return payload;
    }
    if (!changesState(req.method) || !req.identity || req.junk || req.is404) return payload;
    await audit.record({ kind: 'operator', ...intentOf(req, node), ...outcomeOf(reply, payload) });
    return payload;
  });
}

function isEmpty(body: unknown): boolean {
  return body === undefined || body === null || (typeof body === 'object' && Object.keys(body).length === 0);
}

Object.assign(recordFirstPlugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'coolctl-audit-record-first',
});
export const recordFirst = recordFirstPlugin;
