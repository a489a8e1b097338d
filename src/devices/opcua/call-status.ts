// What an OPC-UA status or a node-opcua failure means to a caller, in one place for every path a
// unit can report it (a value's status, a method result, a Write result, a ServiceFault, the
// client's own request timeout). Invariant: a call that outlived a deadline — ours, the timeoutHint
// we sent, or the unit's own — is COOLCTL_E_DEVICE_TIMEOUT (retryable) whoever noticed first.
import { DeviceError, ErrorCodes } from '../../errors.ts';

/**
 * Statuses by which a server says a call outlived its deadline: `BadTimeout` (a server cancelling a
 * request whose timeoutHint passed, Part 4; the simulator's expired WriteCommand) and
 * `BadRequestTimeout`. They race our own deadline, which ends at the same instant as the hint we
 * send: which of the two a caller sees must not change what it is told.
 */
export const TIMEOUT_STATUSES: ReadonlySet<string> = new Set(['BadTimeout', 'BadRequestTimeout']);

/** Bad statuses that say "the unit or the path to it is not answering now": retrying may help. */
export const TRANSIENT_STATUSES: ReadonlySet<string> = new Set([
  ...TIMEOUT_STATUSES,
  'BadCommunicationError',
  'BadNoCommunication',
  'BadServerHalted',
  'BadServerTooBusy',
  'BadTooManyOperations',
  'BadResourceUnavailable',
  'BadWaitingForInitialData',
  'BadSessionClosed',
  'BadSessionIdInvalid',
  'BadSecureChannelClosed',
  'BadConnectionClosed',
]);

/** Statuses that mean the unit did not hear us (or cannot act), as opposed to heard us and said no. */
export const COMM_STATUSES: ReadonlySet<string> = new Set([...TRANSIENT_STATUSES, 'BadDeviceFailure']);

/** node-opcua's words when its own per-request timer ends a transaction with no answer. */
const CLIENT_REQUEST_TIMEOUT = /Transaction has timed out/i;

/**
 * A Bad status the unit answered for `what` (a value, a method, a Write): DEVICE_TIMEOUT for a
 * timeout status, else DEVICE_BAD_STATUS, retryable when the status is transient unless the caller
 * says (a WriteCommand's refusal is final).
 */
export function statusError(
  device: string,
  what: string,
  name: string,
  opts: { retryable?: boolean; cause?: unknown } = {},
): DeviceError {
  const cause = opts.cause === undefined ? {} : { cause: opts.cause };
  if (TIMEOUT_STATUSES.has(name)) {
    return new DeviceError(ErrorCodes.DEVICE_TIMEOUT, device, `${what} answered ${name}: past its deadline`, {
      ...cause,
      retryable: true,
      deviceCode: name,
    });
  }
  return new DeviceError(ErrorCodes.DEVICE_BAD_STATUS, device, `${what} answered ${name}`, {
    ...cause,
    retryable: opts.retryable ?? TRANSIENT_STATUSES.has(name),
    deviceCode: name,
  });
}

/**
 * A failure node-opcua threw for a request of `op`: a ServiceFault (its status read from the fault
 * node-opcua keeps on the error, else from the message), the client's request timeout, or a broken
 * channel or session.
 */
export function thrownError(device: string, op: string, err: unknown): DeviceError {
  const message = err instanceof Error ? err.message : String(err);
  if (CLIENT_REQUEST_TIMEOUT.test(message)) {
    return new DeviceError(ErrorCodes.DEVICE_TIMEOUT, device, `${op}: ${message}`, {
      cause: err,
      retryable: true,
    });
  }
  const status = serviceResultOf(err) ?? statusIn(message);
  if (status && TIMEOUT_STATUSES.has(status)) {
    return new DeviceError(ErrorCodes.DEVICE_TIMEOUT, device, `${op}: ${message}`, {
      cause: err,
      retryable: true,
      deviceCode: status,
    });
  }
  if (status && !TRANSIENT_STATUSES.has(status)) {
    return new DeviceError(ErrorCodes.DEVICE_BAD_STATUS, device, `${op}: ${message}`, {
      cause: err,
      deviceCode: status,
    });
  }
  return new DeviceError(ErrorCodes.DEVICE_UNREACHABLE, device, `${op}: ${message}`, {
    cause: err,
    retryable: true,
    ...(status ? { deviceCode: status } : {}),
  });
}

/** The first OPC-UA status name in a message (node-opcua writes `BadX (0x…)`). */
export function statusIn(message: string): string | undefined {
  return /\b(Bad[A-Za-z]+)\b/.exec(message)?.[1];
}

/** node-opcua keeps a ServiceFault on the error it rejects with (`err.response`). */
function serviceResultOf(err: unknown): string | undefined {
  const name = (err as { response?: { responseHeader?: { serviceResult?: { name?: unknown } } } } | null)
    ?.response?.responseHeader?.serviceResult?.name;
  return typeof name === 'string' && name.startsWith('Bad') ? name : undefined;
}
