// Cross-reference rules a JSON Schema cannot express: unique ids, references that must resolve,
// each AHU in at most one control group, endpoints that do not collide, racks inside their room.
import { alarmSiteProblems } from './alarm-schema.ts';
import { NATIVE_PROFILE, type Site } from './site-schema.ts';
import { type ControlTuningInput, tuningNotes, tuningProblems } from './tuning-schema.ts';

export interface RuleProblem {
  path: string;
  message: string;
  allowed: string;
}

/**
 * `written`: each group's tuning as the file wrote it, before the schema filled its defaults in
 * (`tuningProblems` refuses a written setting the law would have to move, not a default); without
 * it, the site's tunings count as written.
 */
export function checkSiteRules(
  site: Site,
  written?: readonly (ControlTuningInput | undefined)[],
): RuleProblem[] {
  const problems: RuleProblem[] = [];
  const uniq = (list: { id: string }[], where: string): Set<string> => {
    const ids = new Set<string>();
    list.forEach((item, i) => {
      const reserved = reservedIdProblem(item.id, `/${where}/${i}/id`);
      if (reserved) problems.push(reserved);
      if (ids.has(item.id)) {
        problems.push({
          path: `/${where}/${i}/id`,
          message: `duplicate id "${item.id}"`,
          allowed: 'ids unique within their list',
        });
      }
      ids.add(item.id);
    });
    return ids;
  };
  const rooms = uniq(site.rooms, 'rooms');
  const racks = uniq(site.racks, 'racks');
  const ahus = uniq(site.airHandlers, 'airHandlers');
  const gateways = uniq(site.gateways, 'gateways');
  const nodes = uniq(site.sensorNodes, 'sensorNodes');
  uniq(site.controlGroups, 'controlGroups');
  const ref = (set: Set<string>, value: string, path: string, what: string): void => {
    if (!set.has(value)) {
      problems.push({
        path,
        message: `unknown ${what} "${value}"`,
        allowed: `one of the ${what} ids defined in the file`,
      });
    }
  };
  const roomById = new Map(site.rooms.map((r) => [r.id, r]));
  const inside = (roomId: string, x: number, y: number, path: string): void => {
    const room = roomById.get(roomId);
    if (room && (x > room.widthM || y > room.depthM)) {
      problems.push({
        path,
        message: `position (${x}, ${y}) is outside room "${roomId}"`,
        allowed: `0…${room.widthM} × 0…${room.depthM} m`,
      });
    }
  };
  site.racks.forEach((r, i) => {
    const row = reservedIdProblem(r.row, `/racks/${i}/row`);
    if (row) problems.push(row);
    ref(rooms, r.room, `/racks/${i}/room`, 'room');
    inside(r.room, r.xM, r.yM, `/racks/${i}/xM`);
  });
  const endpoints = new Map<string, Map<number, number>>();
  site.airHandlers.forEach((a, i) => {
    ref(rooms, a.room, `/airHandlers/${i}/room`, 'room');
    inside(a.room, a.xM, a.yM, `/airHandlers/${i}/xM`);
    if (a.protocol === 'modbus-tcp' && a.endpoint.port !== 0) {
      // Several units on one endpoint are units behind one Modbus TCP→RTU gateway, told apart by
      // their serial slave address (docs/modbus-register-map.md, "Shared lines and gateways").
      const key = `${a.endpoint.host}:${a.endpoint.port}`;
      const unitId = a.endpoint.unitId;
      const shared = endpoints.get(key);
      if (!shared) {
        endpoints.set(key, new Map([[unitId, i]]));
        return;
      }
      const clash = shared.get(unitId);
      const serial = (u: number) => u >= 1 && u <= 247;
      if (clash !== undefined || ![unitId, ...shared.keys()].every(serial)) {
        problems.push({
          path: `/airHandlers/${i}/endpoint/${clash !== undefined ? 'unitId' : 'port'}`,
          message:
            clash !== undefined
              ? `endpoint ${key} unit id ${unitId} is already used by airHandlers/${clash}`
              : `endpoint ${key} is already used by airHandlers/${[...shared.values()][0]}`,
          allowed:
            'one Modbus TCP endpoint per air handler (or port 0), or units behind one TCP→RTU gateway with distinct unitId 1..247',
        });
      } else shared.set(unitId, i);
    }
  });
  // Units on one serial path share one RS-485 line (src/devices/modbus/rtu-line.ts): one port, one
  // set of line settings, a distinct slave address each.
  const lines = new Map<string, { first: number; settings: string; unitIds: Map<number, number> }>();
  site.airHandlers.forEach((a, i) => {
    if (a.protocol !== 'modbus-rtu') return;
    const e = a.endpoint;
    const settings = `${e.baudRate ?? 19_200} baud, ${e.parity ?? 'even'} parity, ${e.dataBits ?? 8} data bits, ${e.stopBits ?? 1} stop bits`;
    const line = lines.get(e.path);
    if (!line) {
      lines.set(e.path, { first: i, settings, unitIds: new Map([[e.unitId, i]]) });
      return;
    }
    const clash = line.unitIds.get(e.unitId);
    if (clash !== undefined) {
      problems.push({
        path: `/airHandlers/${i}/endpoint/unitId`,
        message: `serial line ${e.path} unit id ${e.unitId} is already used by airHandlers/${clash}`,
        allowed: 'units on one serial line with distinct unitId 1..247',
      });
    } else line.unitIds.set(e.unitId, i);
    if (settings !== line.settings) {
      problems.push({
        path: `/airHandlers/${i}/endpoint`,
        message: `serial line ${e.path} is ${line.settings} for airHandlers/${line.first}, ${settings} here`,
        allowed: 'one baudRate, parity, dataBits and stopBits for every unit on a serial path',
      });
    }
  });
  site.airHandlers.forEach((a, i) => {
    const profile = (a as { profile?: string }).profile ?? NATIVE_PROFILE;
    if (a.fenceBase !== undefined && a.fencing !== 'gateway') {
      problems.push({
        path: `/airHandlers/${i}/fenceBase`,
        message: `air handler "${a.id}" sets fenceBase but is not fenced by a gateway (fencing: ${a.fencing ?? 'default'})`,
        allowed: 'fenceBase only with fencing: gateway',
      });
    }
    if (
      a.protocol === 'opcua' &&
      (a.endpoint.username === undefined) !== (a.endpoint.passwordFile === undefined)
    ) {
      problems.push({
        path: `/airHandlers/${i}/endpoint/${a.endpoint.username === undefined ? 'username' : 'passwordFile'}`,
        message:
          a.endpoint.username === undefined
            ? `air handler "${a.id}" names a passwordFile but no username`
            : `air handler "${a.id}" names a username but no passwordFile: the unit would be sent no password`,
        allowed:
          'username and passwordFile together (the password in that file, relative to the site file), or neither',
      });
    }
    if (
      a.protocol === 'opcua' &&
      a.endpoint.securityMode !== 'None' &&
      a.endpoint.securityPolicy === 'None'
    ) {
      // Signing with no algorithm is no mode a server offers: the link would fail at every connect,
      // or, with a server that took it, carry the unit's commands unsigned while the config says signed.
      problems.push({
        path: `/airHandlers/${i}/endpoint/securityPolicy`,
        message: `air handler "${a.id}" asks for securityMode ${a.endpoint.securityMode ?? 'SignAndEncrypt (the default)'} with securityPolicy None: a signed link needs a policy`,
        allowed:
          'a policy (Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss), or securityMode None where the unit offers nothing else',
      });
    }
    if (a.fencing === 'gateway' && a.protocol === 'opcua') {
      problems.push({
        path: `/airHandlers/${i}/fencing`,
        message: `air handler "${a.id}" is an OPC-UA unit: the coolctl fencing gateway speaks Modbus only`,
        allowed: 'fencing: epoch (coolctl-native units) or lease for an OPC-UA unit',
      });
    }
    if (a.fencing === 'epoch' && profile !== NATIVE_PROFILE) {
      problems.push({
        path: `/airHandlers/${i}/fencing`,
        message: `air handler "${a.id}" asks for epoch fencing, but profile "${profile}" has no epoch point: the unit cannot refuse a deposed leader's writes`,
        allowed: `fencing: lease (timing only) or gateway (a coolctl fencing gateway in front of the unit); epoch needs profile ${NATIVE_PROFILE}`,
      });
    }
  });
  site.sensorNodes.forEach((n, i) => {
    ref(racks, n.rack, `/sensorNodes/${i}/rack`, 'rack');
    ref(gateways, n.gateway, `/sensorNodes/${i}/gateway`, 'gateway');
    const sensorIds = new Set<string>();
    n.sensors.forEach((s, j) => {
      const reserved = reservedIdProblem(s.id, `/sensorNodes/${i}/sensors/${j}/id`);
      if (reserved) problems.push(reserved);
      if (sensorIds.has(s.id)) {
        problems.push({
          path: `/sensorNodes/${i}/sensors/${j}/id`,
          message: `duplicate sensor id "${s.id}"`,
          allowed: 'sensor ids unique within a node',
        });
      }
      sensorIds.add(s.id);
    });
  });
  // One Modbus TCP endpoint is one physical gateway: two site gateways on it would poll the same slave
  // ids and give each node's readings to two nodes and their racks; an air handler there is no gateway.
  const gatewayAt = new Map<string, number>();
  site.gateways.forEach((g, i) => {
    if (g.transport === 'modbus-tcp' && !g.endpoint) {
      problems.push({
        path: `/gateways/${i}/endpoint`,
        message: `gateway "${g.id}" is polled over Modbus TCP but has no endpoint`,
        allowed: 'endpoint: {host, port} (port 0: the simulator picks one)',
      });
    }
    if (g.transport !== 'modbus-tcp' || !g.endpoint || g.endpoint.port === 0) return;
    const key = `${g.endpoint.host}:${g.endpoint.port}`;
    const other = gatewayAt.get(key);
    const unit = endpoints.get(key);
    if (other !== undefined || unit !== undefined)
      problems.push({
        path: `/gateways/${i}/endpoint`,
        message: `gateway "${g.id}" is polled at ${key}, already ${other !== undefined ? `gateways/${other}'s` : `airHandlers/${[...unit!.values()][0]}'s`}: two would read the same slave ids as different nodes`,
        allowed: 'each Modbus TCP sensor gateway at an endpoint of its own',
      });
    else gatewayAt.set(key, i);
  });
  for (const [gwId, ids] of nodeUnitIds(site)) {
    const seen = new Map<number, string>();
    for (const [nodeId, unitId] of ids) {
      const i = site.sensorNodes.findIndex((n) => n.id === nodeId);
      if (unitId > 247) {
        problems.push({
          path: `/sensorNodes/${i}/unitId`,
          message: `node "${nodeId}" would get Modbus slave id ${unitId} on gateway "${gwId}"`,
          allowed: 'at most 247 nodes per Modbus gateway; give unitId explicitly or split the gateway',
        });
      } else if (seen.has(unitId)) {
        problems.push({
          path: `/sensorNodes/${i}/unitId`,
          message: `slave id ${unitId} is already used by node "${seen.get(unitId)}" on gateway "${gwId}"`,
          allowed: 'one slave id per node on a gateway',
        });
      } else seen.set(unitId, nodeId);
    }
  }
  const ahuOwner = new Map<string, string>();
  site.controlGroups.forEach((g, i) => {
    g.airHandlers.forEach((a, j) => {
      ref(ahus, a, `/controlGroups/${i}/airHandlers/${j}`, 'air handler');
      const owner = ahuOwner.get(a);
      if (owner !== undefined) {
        problems.push({
          path: `/controlGroups/${i}/airHandlers/${j}`,
          message: `air handler "${a}" is already in control group "${owner}"`,
          allowed: 'each air handler in at most one control group (one leader per unit)',
        });
      } else ahuOwner.set(a, g.id);
    });
    g.sensorNodes.forEach((n, j) => {
      ref(nodes, n, `/controlGroups/${i}/sensorNodes/${j}`, 'sensor node');
    });
    for (const [a, row] of Object.entries(g.influence ?? {})) {
      const path = `/controlGroups/${i}/influence/${pointerToken(a)}`;
      if (!g.airHandlers.includes(a)) {
        problems.push({
          path,
          message: `air handler "${a}" is not in control group "${g.id}"`,
          allowed: "the group's own air handlers",
        });
      }
      for (const r of Object.keys(row)) ref(racks, r, `${path}/${pointerToken(r)}`, 'rack');
    }
    problems.push(...tuningProblems(written ? written[i] : g.tuning, `/controlGroups/${i}/tuning`));
    // A unit's own fan floor keyed by a unit not in the group would silently guard nothing.
    for (const a of Object.keys(g.tuning?.unitMinFanPct ?? {})) {
      if (!g.airHandlers.includes(a))
        problems.push({
          path: `/controlGroups/${i}/tuning/unitMinFanPct/${pointerToken(a)}`,
          message: `air handler "${a}" is not in control group "${g.id}"`,
          allowed: "the group's own air handlers",
        });
    }
  });
  problems.push(...sensingProblems(site.sensing));
  problems.push(...alarmSiteProblems(site));
  return problems;
}

/**
 * The names every JavaScript object answers to (`constructor`, `toString`, `valueOf`, …) that the
 * id pattern lets through. Code keys maps by id (a unit's fan floor in `tuning.unitMinFanPct`, a
 * group's neighbours); an id among these finds Object.prototype's function where no entry is — a
 * unit called `constructor` got a fan floor of NaN — so it is refused here, once for every reader.
 */
const RESERVED_IDS: ReadonlySet<string> = new Set(
  Object.getOwnPropertyNames(Object.prototype).filter((n) => /^[A-Za-z0-9]/.test(n)),
);

/** A refusal for an id (or node name) that names an Object.prototype member; `what` names the thing. */
export function reservedIdProblem(id: string, path: string, what = 'an id'): RuleProblem | undefined {
  if (!RESERVED_IDS.has(id)) return undefined;
  return {
    path,
    message: `"${id}" is a name every JavaScript object has (Object.prototype.${id}): as ${what} it would be mistaken for it`,
    allowed: `another name (e.g. ${id}-1); not ${[...RESERVED_IDS].join(', ')}`,
  };
}

/** Each group's tuning defaults that a range its file moved puts elsewhere (`tuningNotes`), as warnings. */
export function siteTuningNotes(
  site: Site,
  written: readonly (ControlTuningInput | undefined)[],
): RuleProblem[] {
  return site.controlGroups.flatMap((_, i) => tuningNotes(written[i], `/controlGroups/${i}/tuning`));
}

/** Ranges in `sensing` whose ends must come in order: an inverted one would call every reading bad. */
function sensingProblems(s: Site['sensing']): RuleProblem[] {
  const problems: RuleProblem[] = [];
  const range = s?.inletRangeC;
  if (range && !(range[0] < range[1]))
    problems.push({
      path: '/sensing/inletRangeC/1',
      message: `the range [${range[0]}, ${range[1]}] is empty: its upper end is not above its lower end`,
      allowed: '[lowest, highest] °C with lowest < highest (default [-10, 60])',
    });
  if (s?.okCoverage !== undefined && s.blindCoverage !== undefined && s.blindCoverage > s.okCoverage)
    problems.push({
      path: '/sensing/blindCoverage',
      message: `blindCoverage (${s.blindCoverage}) is above okCoverage (${s.okCoverage})`,
      allowed: 'blindCoverage ≤ okCoverage',
    });
  return problems;
}

/** A key as one JSON-pointer token (RFC 6901). */
const pointerToken = (key: string): string => key.replace(/~/g, '~0').replace(/\//g, '~1');

/**
 * Modbus slave id of every node on each modbus-tcp gateway: its `unitId`, else its position among
 * the gateway's nodes (1, 2, …). The simulator and the controller both use this one rule.
 */
export function nodeUnitIds(site: Site): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  for (const g of site.gateways) if (g.transport === 'modbus-tcp') out.set(g.id, new Map());
  for (const n of site.sensorNodes) {
    const ids = out.get(n.gateway);
    if (ids) ids.set(n.id, n.unitId ?? ids.size + 1);
  }
  return out;
}
