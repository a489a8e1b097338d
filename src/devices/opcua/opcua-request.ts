// One request as the OPC-UA adapter sends it: a CallRequest with our own timeoutHint, a node-opcua
// promise raced against the call's signal, and what a failed call says about the link. Invariant:
// a hint never outlasts the lease or the call's deadline; a unit that answered "no" is a live link.
import { type CallRequest, CallResponse, type ClientSession } from 'node-opcua-client';
import { type DeviceError, ErrorCodes } from '../../errors.ts';
import { COMM_STATUSES } from './call-status.ts';

/** Failures that say the path to the unit is in trouble (as opposed to the unit saying no). */
export function countsAsLinkFailure(e: DeviceError): boolean {
  switch (e.code) {
    case ErrorCodes.DEVICE_TIMEOUT:
    case ErrorCodes.DEVICE_UNREACHABLE:
    case ErrorCodes.DEVICE_GARBAGE:
      return true;
    case ErrorCodes.DEVICE_BAD_STATUS:
      // A status that says the unit or its path does not answer; any other (BadSensorFailure on a
      // point, BadNodeIdUnknown, BadUserAccessDenied) came from a unit that answers: the link is up,
      // as with a Modbus exception, and one failed probe never takes remote control away.
      return COMM_STATUSES.has(String(e.deviceCode));
    default:
      return false;
  }
}

/** The unit answered (refused, fenced, mismatched): the link itself is fine. */
export function deviceAnswered(e: DeviceError): boolean {
  return (
    e.code === ErrorCodes.DEVICE_FENCED ||
    e.code === ErrorCodes.DEVICE_VERIFY_MISMATCH ||
    e.code === ErrorCodes.DEVICE_BAD_STATUS
  );
}

/**
 * A call's timeoutHint: what is left of the lease or of the call's own deadline, whichever ends
 * first — a retry goes out with less than client.timeoutMs left, and a unit that honoured a longer
 * hint could apply it after we gave up and reported DEVICE_TIMEOUT.
 */
export function hintMs(leaseBudgetMs: number, callDeadlineMs: number): number {
  return Math.max(1, Math.floor(Math.min(leaseBudgetMs, callDeadlineMs - performance.now())));
}

/**
 * One request as built, header included (session.call() makes its own CallRequest, whose hint the
 * caller cannot set). A service fault rejects, as with session.call().
 */
export function transact(session: ClientSession, request: CallRequest): Promise<CallResponse> {
  const s = session as unknown as {
    performMessageTransaction(req: CallRequest, cb: (err: Error | null, res?: unknown) => void): void;
  };
  return new Promise((ok, fail) => {
    s.performMessageTransaction(request, (err, res) => {
      if (err) fail(err);
      else if (res instanceof CallResponse) ok(res);
      else fail(new Error(`CallRequest answered with ${String((res as object)?.constructor?.name)}`));
    });
  });
}

/** Races a node-opcua promise (which takes no signal) against `signal`. */
export function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((ok, fail) => {
    const onAbort = () => fail(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(ok, fail).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
