// What a simulated OPC-UA unit answers when it is faulted, and who a session is in the journal:
// shared by the native node map (./opcua-server.ts) and vendor-profile units (./opcua-profile-unit.ts)
// so both kinds of unit fail, and name their writers, the same way.
import { type ISessionContext, type StatusCode, StatusCodes } from 'node-opcua';
import type { RejectReason, SimAirHandler } from './unit.ts';

/** The status every read and call of a faulted unit answers, and the journal reason of a refused call. */
export function faultStatus(unit: SimAirHandler): { status: StatusCode; reason: RejectReason } | null {
  if (unit.faults.offline) return { status: StatusCodes.BadCommunicationError, reason: 'offline' };
  if (unit.faults.badStatus) {
    const status = statusByName(unit.faults.badStatus);
    // A fault must never read as Good: an unknown or non-Bad name falls back to BadDeviceFailure.
    return {
      status: status.isBad() ? status : StatusCodes.BadDeviceFailure,
      reason: 'fault-bad-status',
    };
  }
  return null;
}

export function statusByName(name: string): StatusCode {
  const status = (StatusCodes as unknown as Record<string, StatusCode | undefined>)[name];
  return status ?? StatusCodes.BadDeviceFailure;
}

/** `opcua:<session name or client application>@<session id>`: who wrote, as the journal names it. */
export function clientIdentity(context: ISessionContext | undefined): string {
  const session = context?.session as
    | {
        sessionName?: string;
        clientDescription?: { applicationUri?: string | null };
        getSessionId?: () => { toString(): string };
      }
    | undefined;
  if (!session) return 'opcua:local';
  const name = session.sessionName || session.clientDescription?.applicationUri || 'anonymous';
  return `opcua:${name}@${session.getSessionId?.().toString() ?? '?'}`;
}
