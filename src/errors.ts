// One catalog of errors with stable codes. Every error says whether retrying can help, carries a
// `cause` where there is one, and renders a message that tells the operator what to fix.

export const ErrorCodes = {
  CONFIG_INVALID: 'COOLCTL_E_CONFIG_INVALID',
  FAULT_INVALID: 'COOLCTL_E_FAULT_INVALID',
  BAD_REQUEST: 'COOLCTL_E_BAD_REQUEST',
  STARTUP: 'COOLCTL_E_STARTUP',
  DEVICE_TIMEOUT: 'COOLCTL_E_DEVICE_TIMEOUT',
  DEVICE_UNREACHABLE: 'COOLCTL_E_DEVICE_UNREACHABLE',
  DEVICE_EXCEPTION: 'COOLCTL_E_DEVICE_EXCEPTION',
  DEVICE_GARBAGE: 'COOLCTL_E_DEVICE_GARBAGE',
  DEVICE_BAD_STATUS: 'COOLCTL_E_DEVICE_BAD_STATUS',
  DEVICE_FENCED: 'COOLCTL_E_DEVICE_FENCED',
  DEVICE_REFUSED: 'COOLCTL_E_DEVICE_REFUSED',
  DEVICE_VERIFY_MISMATCH: 'COOLCTL_E_DEVICE_VERIFY_MISMATCH',
  DEVICE_UNTRUSTED: 'COOLCTL_E_DEVICE_UNTRUSTED_CERTIFICATE',
  DEVICE_AUTH: 'COOLCTL_E_DEVICE_AUTH',
  DEVICE_CLOSED: 'COOLCTL_E_DEVICE_CLOSED',
  DEVICE_ABORTED: 'COOLCTL_E_DEVICE_ABORTED',
  NOT_LEADER: 'COOLCTL_E_NOT_LEADER',
  ETCD_TIMEOUT: 'COOLCTL_E_ETCD_TIMEOUT',
  ETCD_UNAVAILABLE: 'COOLCTL_E_ETCD_UNAVAILABLE',
  /** etcd refuses writes: its backend quota is used up (NOSPACE alarm); an operator must free space. */
  ETCD_NO_SPACE: 'COOLCTL_E_ETCD_NO_SPACE',
  LEASE_LOST: 'COOLCTL_E_LEASE_LOST',
  NODE_NAME_TAKEN: 'COOLCTL_E_NODE_NAME_TAKEN',
  DATA_DIR_IN_USE: 'COOLCTL_E_DATA_DIR_IN_USE',
  SWITCHOVER_FAILED: 'COOLCTL_E_SWITCHOVER_FAILED',
  /** Others kept changing a group's operator state while this node wrote it: try again (503). */
  OPERATOR_STATE_CONTENDED: 'COOLCTL_E_OPERATOR_STATE_CONTENDED',
  CLUSTER_ABORTED: 'COOLCTL_E_CLUSTER_ABORTED',
  MQTT_PACKET_TOO_LARGE: 'COOLCTL_E_MQTT_PACKET_TOO_LARGE',
  /** A broker broke the protocol (a PUBLISH at a QoS we never asked for): the connection is closed. */
  MQTT_PROTOCOL_VIOLATION: 'COOLCTL_E_MQTT_PROTOCOL_VIOLATION',
  /** A device profile (config/profiles/*.yaml) that breaks its schema or rules. */
  PROFILE_INVALID: 'COOLCTL_E_PROFILE_INVALID',
  /** A command value a profile's point cannot encode (out of the register's range, or no such point). */
  PROFILE_VALUE: 'COOLCTL_E_PROFILE_VALUE',
  /** An API request without a valid identity (no or unknown token, expired session, wrong password). */
  UNAUTHENTICATED: 'COOLCTL_E_UNAUTHENTICATED',
  /** An API request whose identity's role does not allow the route. */
  FORBIDDEN: 'COOLCTL_E_FORBIDDEN',
  /** A state-changing request a cross-site page could have sent (not JSON, or no request header). */
  CROSS_SITE: 'COOLCTL_E_CROSS_SITE',
  /** Too many sign-ins or state-changing requests in the limiter's window. */
  RATE_LIMITED: 'COOLCTL_E_RATE_LIMITED',
  /** An operator action refused because the audit trail (etcd) did not take its entry in time: nothing was done (503). */
  AUDIT_UNAVAILABLE: 'COOLCTL_E_AUDIT_UNAVAILABLE',
  /** An audit entry written before its action whose answer was never recorded: the action may or may not have run. */
  AUDIT_NO_OUTCOME: 'COOLCTL_E_AUDIT_NO_OUTCOME',
  /** The CLI refused an API server whose certificate its CA did not sign, or not for the address dialled. */
  API_UNTRUSTED: 'COOLCTL_E_API_UNTRUSTED_CERTIFICATE',
  /** A release folder or bundle that cannot be installed or run (no manifest, a bad wire range, no such version). */
  RELEASE_INVALID: 'COOLCTL_E_RELEASE_INVALID',
  /** A rolling upgrade refused before it touched a node (an unhealthy cluster, no wire version in common). */
  UPGRADE_REFUSED: 'COOLCTL_E_UPGRADE_REFUSED',
  /** A rolling upgrade stopped at a node that did not come back; that node was rolled back. */
  UPGRADE_FAILED: 'COOLCTL_E_UPGRADE_FAILED',
  /** An error none of ours: the answer names the request id the node's log has it under, nothing more. */
  INTERNAL: 'COOLCTL_E_INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class CoolctlError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = opts.retryable ?? false;
  }
}

/**
 * Refused for what it was given — a folder or tarball that is no release for this host, a version
 * that is not installed, a node list that names no member — as against what failed on the way (a
 * root that cannot be written, a node that did not come back). The CLI exits 2 for the first and 1
 * for the second (docs/cli.md, "Exit codes"); the error's code is the catalogue's either way.
 */
export class InputRefusedError extends CoolctlError {}

export interface ConfigProblem {
  file: string;
  /** JSON pointer into the document, e.g. /airHandlers/3/endpoint/port */
  path: string;
  line?: number | undefined;
  message: string;
  allowed: string;
  /** Set on the one problem that says checking stopped there (MAX_CHECKED_PROBLEMS): not counted. */
  checkingStopped?: true;
}

export class ConfigError extends CoolctlError {
  readonly problems: ConfigProblem[];
  constructor(
    file: string,
    problems: ConfigProblem[],
    opts: {
      cause?: unknown;
      code?: typeof ErrorCodes.CONFIG_INVALID | typeof ErrorCodes.PROFILE_INVALID;
    } = {},
  ) {
    super(
      opts.code ?? ErrorCodes.CONFIG_INVALID,
      `${file}: ${problemCountWords(problems)}\n${formatProblems(problems)}`,
      opts,
    );
    this.problems = problems;
  }
}

export function formatProblem(p: ConfigProblem): string {
  const where = `${p.file}${p.line ? `:${p.line}` : ''}`;
  return `  ${where} ${p.path || '/'}: ${p.message} (allowed: ${p.allowed})`;
}

/**
 * How many problems a message or a log line lists: a file with 300 000 bad racks must not become
 * a 57 MB log line. The first ones are what to fix first; the rest are counted.
 */
export const MAX_LISTED_PROBLEMS = 100;

/**
 * How many problems a check collects before it stops: refusing a file costs a bounded heap whatever
 * the file holds (8 MB of `{}` would be 16 million "is required"). The list then ends with one
 * problem that says so (`checkingStopped`), and counts read "at least".
 */
export const MAX_CHECKED_PROBLEMS = 1000;

/** The problem a list ends with where checking stopped. */
export function checkingStoppedProblem(file: string): ConfigProblem {
  return {
    file,
    path: '',
    message: `more problems than the ${MAX_CHECKED_PROBLEMS} a check collects: checking stopped here`,
    allowed: 'fix the problems listed, then check again',
    checkingStopped: true,
  };
}

/** The count of a problem list as logs and JSON give it: `checkingStopped` when it is a lower bound. */
export function problemCount(problems: readonly ConfigProblem[]): {
  problemCount: number;
  checkingStopped?: true;
} {
  const stopped = problems.some((p) => p.checkingStopped);
  const n = stopped ? problems.filter((p) => !p.checkingStopped).length : problems.length;
  return stopped ? { problemCount: n, checkingStopped: true } : { problemCount: n };
}

/** `12 problem(s)`, or `at least 1000 problems (checking stopped there)`. */
export function problemCountWords(problems: readonly ConfigProblem[]): string {
  const c = problemCount(problems);
  return countWords(c.problemCount, c.checkingStopped === true);
}

/** The words of a count, for lists of problems of any shape (CLI checks keep theirs as text). */
export function countWords(count: number, checkingStopped: boolean): string {
  return checkingStopped
    ? `at least ${count} problems (checking stops after ${MAX_CHECKED_PROBLEMS})`
    : `${count} problem(s)`;
}

/** The line after the problems listed, when `more` were not; undefined when none. */
export function moreProblemsLine(more: number, checkingStopped: boolean): string | undefined {
  if (more <= 0) return undefined;
  return checkingStopped
    ? `  … and ${more} more problem(s) like these, and more not checked (fix those above, then check again)`
    : `  … and ${more} more problem(s) like these (fix those above, then check again)`;
}

/** The first MAX_LISTED_PROBLEMS problems, one a line, then "… and N more". */
export function formatProblems(problems: readonly ConfigProblem[]): string {
  const listed = problems.slice(0, MAX_LISTED_PROBLEMS);
  const lines = listed.map(formatProblem);
  const { problemCount: n, checkingStopped } = problemCount(problems);
  const more = moreProblemsLine(n - problemCount(listed).problemCount, checkingStopped === true);
  if (more !== undefined) lines.push(more);
  return lines.join('\n');
}

/** A request the simulator or the API refuses; `details` lists each problem for the 400 body. */
export class BadRequestError extends CoolctlError {
  readonly details: string[];
  /** The HTTP status an API answers it with: 400 unless the request was fine but aimed wrong (404, 409). */
  readonly httpStatus: number;
  constructor(code: ErrorCode, message: string, details: string[] = [], httpStatus = 400) {
    super(code, message);
    this.details = details;
    this.httpStatus = httpStatus;
  }
}

/** A failed device call. `retryable` says whether the same call may succeed if tried again. */
export class DeviceError extends CoolctlError {
  readonly device: string;
  /** Modbus exception code or OPC-UA status name, where the device said one. */
  readonly deviceCode: number | string | undefined;
  /** DEVICE_FENCED: the epoch the unit was read to hold, above the one refused (the proof). */
  readonly unitEpoch: number | undefined;
  constructor(
    code: ErrorCode,
    device: string,
    message: string,
    opts: { cause?: unknown; retryable?: boolean; deviceCode?: number | string; unitEpoch?: number } = {},
  ) {
    super(code, `${device}: ${message}`, opts);
    this.device = device;
    this.deviceCode = opts.deviceCode;
    this.unitEpoch = opts.unitEpoch;
  }
}
