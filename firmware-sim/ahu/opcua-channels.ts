// The OPC-UA units' secure-channel bound under the simulator's rule for bad input: node-opcua caps
// channels per endpoint (maxConnections) and, at the cap, closes the oldest channel without a
// session, or refuses the newcomer when every channel has one. Each such closing and refusal is a
// counter and a rate-limited log line here, and node-opcua's own lines about them (one or two per
// socket, on stdout) are quieted: a client opening sockets in a loop costs a line a second, not a flood.
// node-opcua has no event for a channel closed at the cap, so its one decision point
// (OPCUAServerEndPoint#_prevent_DDOS_Attack) is wrapped; without it, we say so at start and count none.
// The wrapper also takes newcomers one at a time: node-opcua picks the same victim for newcomers that
// arrive together and refuses all but the first (40 silent sockets at once: 15 of them refused, each
// with a line on stdout that cannot be routed); one at a time, each takes the slot of a silent one.
import { type OPCUAServer, setErrorLogger, setWarningLogger } from 'node-opcua';
import type { Logger } from 'pino';
import { clip, LogLimiter, RateLimitedLog } from '../../src/util/log-limit.ts';

/** Each kind of line at most once per this, per server (the Modbus listener's rate). */
const LOG_INTERVAL_MS = 1_000;
/**
 * A newcomer's turn ends once node-opcua established or refused it (a refusal when every channel has
 * a session comes after node-opcua's own 1 s); past this the next one goes anyway, so a close that
 * never calls back cannot stop the endpoint from taking connections.
 */
const TURN_DEADLINE_MS = 5_000;

export interface OpcuaChannelCounters {
  /** A newcomer refused: every channel at the cap had a session (node-opcua's `connectionRefused`). */
  connectionsRefused: number;
  /** At the cap, the oldest channel without a session closed for a newcomer. */
  channelsDropped: number;
}

export function newOpcuaChannelCounters(): OpcuaChannelCounters {
  return { connectionsRefused: 0, channelsDropped: 0 };
}

interface ChannelView {
  hasSession: boolean;
  remoteAddress: string;
  remotePort: number;
}

/** The members of an endpoint the guard relies on; `_prevent_DDOS_Attack` is node-opcua's own. */
interface GuardedEndpoint {
  maxConnections: number;
  activeChannelCount: number;
  getChannels(): ChannelView[];
  _prevent_DDOS_Attack?: (establish: () => void, deny: () => void) => void;
}

/** Counts and logs every refusal and channel closed at the cap of `server`'s endpoints. */
export function guardOpcuaChannels(
  server: OPCUAServer,
  counters: OpcuaChannelCounters,
  log: Logger,
  endpointUrl: () => string,
): void {
  const warns = new RateLimitedLog(log, LOG_INTERVAL_MS);
  server.on('connectionRefused', (socketData, endpoint) => {
    counters.connectionsRefused++;
    warns.warn(
      'refused',
      {
        endpointUrl: endpointUrl(),
        client: `opcua:${socketData.remoteAddress ?? '?'}:${socketData.remotePort ?? '?'}`,
        maxConnections: endpoint.maxConnections,
      },
      'opcua connection refused at the channel cap: every channel has a session',
    );
  });
  for (const endpoint of server.endpoints as unknown as GuardedEndpoint[]) {
    const decide = endpoint._prevent_DDOS_Attack;
    if (typeof decide !== 'function') {
      log.warn(
        { endpointUrl: endpointUrl() },
        'this node-opcua has no channel-cap hook; channels closed at the cap are not counted',
      );
      continue;
    }
    const noteVictim = (ep: GuardedEndpoint): void => {
      if (ep.activeChannelCount < ep.maxConnections) return;
      // node-opcua's own choice: the oldest channel without a session.
      const victim = ep.getChannels().find((c) => !c.hasSession);
      if (!victim) return;
      counters.channelsDropped++;
      warns.warn(
        'dropped',
        {
          endpointUrl: endpointUrl(),
          client: `opcua:${victim.remoteAddress}:${victim.remotePort}`,
          maxConnections: ep.maxConnections,
        },
        'opcua channel closed: it had no session, and a newcomer needed its slot at the channel cap',
      );
    };
    let turns: Promise<void> = Promise.resolve();
    // Called once per new socket (paused until node-opcua establishes its channel).
    endpoint._prevent_DDOS_Attack = function (
      this: GuardedEndpoint,
      establish: () => void,
      deny: () => void,
    ) {
      turns = turns.then(
        () =>
          new Promise<void>((endTurn) => {
            const deadline = setTimeout(endTurn, TURN_DEADLINE_MS);
            const done = (): void => {
              clearTimeout(deadline);
              endTurn();
            };
            try {
              noteVictim(this);
              decide.call(
                this,
                () => {
                  try {
                    establish();
                  } finally {
                    done();
                  }
                },
                () => {
                  try {
                    deny();
                  } finally {
                    done();
                  }
                },
              );
            } catch (err) {
              log.error({ err, endpointUrl: endpointUrl() }, 'opcua channel cap check failed');
              done();
            }
          }),
      );
    };
  }
}

/** node-opcua's lines that repeat what the guard counts and logs (server_end_point.js). */
const CAP_LINES =
  /PREVENTING DDOS ATTACK|Forcefully closing oldest channel|All channels are in used|nbConnections/;

interface LineContext {
  filename?: string;
  callerline?: number;
}

/**
 * Routes node-opcua's warnings and errors (process-wide, as node-opcua keeps them) into `log`:
 * the channel-cap lines are dropped (the guard has them), every other call site is written at most
 * once per LOG_INTERVAL_MS with how many were not. The last caller's logger wins.
 */
export function routeSimNodeOpcuaLogs(log: Logger): void {
  const out = log.child({ component: 'node-opcua' });
  const limiter = new LogLimiter(() => performance.now(), LOG_INTERVAL_MS);
  const route =
    (level: 'warn' | 'error') =>
    (ctx: LineContext, ...args: unknown[]): void => {
      const text = args.map((a) => (typeof a === 'string' ? a : String(a))).join(' ');
      if (ctx?.filename === 'server_end_point' && CAP_LINES.test(text)) return;
      const site = `${ctx?.filename ?? '?'}:${ctx?.callerline ?? '?'}`;
      const notLogged = limiter.admit(`${level} ${site}`);
      if (notLogged >= 0) out[level]({ site, suppressedSinceLast: notLogged }, clip(text, 500));
    };
  setWarningLogger(route('warn') as (...args: unknown[]) => void);
  setErrorLogger(route('error') as (...args: unknown[]) => void);
}
