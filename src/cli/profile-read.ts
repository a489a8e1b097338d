// `coolctl profile read --unit ID [--config FILE]`: for commissioning a unit. Connects to it as the
// site file says, reads every readable point of its profile once (coolctl-native for a unit
// without one) and prints each point's name, place, raw words, value in engineering units and
// unit — so a technician sees at once whether the map and the scaling match the unit's display.
// An OPC-UA unit (native, or with a vendor profile's `opcua:` section) is read the same way: each
// point's node (and the browse path it was found by), raw value with its data type or the status
// that says why there is none, value and unit. Reads only: nothing is written. Returns the text
// and the exit code; the CLI prints them.
import { dirname, join, resolve } from 'node:path';
import { pino } from 'pino';
import { parse } from 'yaml';
import { readConfigFile, SITE_FILE_MAX_BYTES } from '../config/config-files.ts';
import { loadSite } from '../config/load-site.ts';
import {
  type AirHandler,
  type ModbusAirHandler,
  type ModbusRtuAirHandler,
  NATIVE_PROFILE,
  type OpcuaAirHandler,
  unitFencing,
} from '../config/site-schema.ts';
import { createDevice, DEFAULT_PROFILES_DIR } from '../devices/create-device.ts';
import { ProfileModbusDevice } from '../devices/modbus/profile-device.ts';
import type { RawNodeRead } from '../devices/opcua/profile-nodes.ts';
import {
  type CompiledPoint,
  type CompiledProfile,
  compileProfile,
  type ReadResult,
} from '../devices/profile/codec.ts';
import { loadProfile } from '../devices/profile/load.ts';
import { toModicon } from '../devices/profile/modicon.ts';
import { isPointName, POINTS, type PointKind } from '../devices/profile/points.ts';
import { DeviceError } from '../errors.ts';
import { compareCodeUnits } from '../util/order.ts';

export interface ProfileReadOptions {
  unit: string;
  /** A site file, or a controller config (its `site:` is used). */
  config: string;
  profilesDir?: string;
  /** OPC-UA: the client's certificate store (default var/opcua-client-pki); its trusted/ folder says which units to trust. */
  pkiDir?: string;
}

export interface ReadOutcome {
  exitCode: 0 | 1 | 2;
  text: string;
}

const UNIT_OF: Readonly<Record<PointKind | 'alarm', string>> = {
  temperatureC: '°C',
  percent: '%',
  kilowatt: 'kW',
  seconds: 's',
  counter: '',
  boolean: '',
  mode: '',
  alarm: '',
};

export async function profileRead(o: ProfileReadOptions): Promise<ReadOutcome> {
  const ahu = (await siteOf(o.config, o.profilesDir)).airHandlers.find((a) => a.id === o.unit);
  if (!ahu) {
    return { exitCode: 2, text: `${o.config}: no air handler "${o.unit}" in the site file\n` };
  }
  const name = (ahu as { profile?: string }).profile ?? NATIVE_PROFILE;
  const file = join(o.profilesDir ?? DEFAULT_PROFILES_DIR, `${name}.yaml`);
  const firmware = (ahu as { firmware?: string }).firmware;
  const profile = compileProfile(await loadProfile(file), firmware === undefined ? {} : { firmware });
  if (ahu.protocol === 'opcua') return readOpcua(o, ahu, profile);
  // Reads pass a fencing gateway unchanged, so every unit is read the same way here.
  const device = new ProfileModbusDevice(ahu as ModbusAirHandler | ModbusRtuAirHandler, profile);
  try {
    const { results } = await device.readAll();
    return { exitCode: 0, text: report(ahu, device, profile, results) };
  } catch (err) {
    if (!(err instanceof DeviceError)) throw err;
    return {
      exitCode: 1,
      text: `${o.unit} (${device.endpoint}, profile ${profile.name}): ${err.code}: ${err.message}\n`,
    };
  } finally {
    await device.close();
  }
}

/**
 * An OPC-UA unit: connect as the controller would (the unit's endpoint, security and user; the
 * certificate store `pkiDir`, trusting only what is in it), read every node of its profile once.
 */
async function readOpcua(o: ProfileReadOptions, ahu: OpcuaAirHandler, profile: CompiledProfile) {
  const where = `${o.unit} (${ahu.endpoint.url}, profile ${profile.name})`;
  if (!profile.opcua) {
    return { exitCode: 2 as const, text: `${where}: the profile has no opcua section\n` };
  }
  const { OpcuaDevice } = await import('../devices/opcua/opcua-device.ts');
  const device = await createDevice(ahu, {
    // node-opcua prints its own warnings; routed into a silent log, the output stays the table.
    logger: pino({ level: 'silent' }),
    clientName: 'coolctl-profile-read',
    ...(o.pkiDir !== undefined ? { pkiDir: o.pkiDir } : {}),
    ...(o.profilesDir !== undefined ? { profilesDir: o.profilesDir } : {}),
  });
  try {
    if (!(device instanceof OpcuaDevice))
      throw new Error('unreachable: an OPC-UA unit without an OpcuaDevice');
    await device.open();
    const reads = await device.readProfileNodes(profile);
    return { exitCode: 0 as const, text: opcuaReport(ahu, profile, reads) };
  } catch (err) {
    if (!(err instanceof DeviceError)) throw err;
    return { exitCode: 1 as const, text: `${where}: ${err.code}: ${err.message}\n` };
  } finally {
    await device.close();
  }
}

function opcuaReport(ahu: OpcuaAirHandler, profile: CompiledProfile, reads: RawNodeRead[]): string {
  const rows: string[][] = [['point', 'node', 'raw', 'value', 'unit']];
  for (const r of reads) {
    rows.push([
      r.name,
      r.browsePath ? `${r.browsePath} = ${r.nodeId}` : r.nodeId,
      r.value === null ? r.status : `${String(r.value)} ${r.dataType ?? ''}`.trimEnd(),
      opcuaValue(profile, r),
      isPointName(r.name) ? UNIT_OF[POINTS[r.name].kind] : UNIT_OF.alarm,
    ]);
  }
  return `${header(ahu, ahu.endpoint.url, profile)}\n${columns(rows)}\n`;
}

/** The node's value decoded alone, as the device decodes it: its value, its alarms, or "no data". */
function opcuaValue(profile: CompiledProfile, r: RawNodeRead): string {
  if (r.value === null || !profile.opcua) return 'no data';
  const s = profile.opcua.decode({ [r.name]: r.value }) as unknown as Record<string, unknown> & {
    alarms: string[];
    absent: string[];
  };
  return shown(s, r.name, !isPointName(r.name));
}

function header(ahu: AirHandler, endpoint: string, profile: CompiledProfile): string {
  return (
    `${ahu.id}: ${ahu.protocol} ${endpoint}, profile ${profile.name}, fencing ${unitFencing(ahu)}, ` +
    `watchdog ${profile.watchdog.style}${profile.watchdog.style === 'none' ? ' (the controller is the only guard)' : ''}`
  );
}

function columns(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** One decoded point as printed: "no data", the alarms on, the mode with its code, or the value. */
function shown(
  s: Record<string, unknown> & { alarms: string[]; absent: string[] },
  name: string,
  alarm: boolean,
): string {
  if (s.absent.includes(name)) return 'no data';
  if (alarm) return s.alarms.length > 0 ? `on: ${s.alarms.join(', ')}` : 'off';
  if (name === 'mode') return `${String(s.mode)} (${String(s.modeCode)})`;
  const v = s[name];
  if (typeof v === 'number') return String(Math.round(v * 1000) / 1000);
  return String(v);
}

/** The site: the file itself, or the `site:` of a controller config (relative to it). */
async function siteOf(file: string, profilesDir: string | undefined) {
  // Read as the daemon reads it: a FIFO or /dev/zero is refused, not waited on or read without end.
  const text = await readConfigFile(file, SITE_FILE_MAX_BYTES, 'site file or controller config');
  let doc: unknown;
  try {
    doc = parse(text);
  } catch {
    doc = undefined; // loadSite reports the syntax error with its line
  }
  const site = (doc as { site?: unknown } | undefined)?.site;
  const opts = profilesDir !== undefined ? { profilesDir } : {};
  if (typeof site === 'string') return loadSite(resolve(dirname(file), site), opts);
  return loadSite(file, opts);
}

function report(
  ahu: AirHandler,
  device: ProfileModbusDevice,
  profile: CompiledProfile,
  results: ReadResult[],
): string {
  const rows: string[][] = [['point', 'table', 'address', 'raw', 'value', 'unit']];
  const points = [...profile.points.values()]
    .filter((p) => p.readable)
    .sort((a, b) => compareCodeUnits(a.table, b.table) || a.address - b.address);
  for (const p of points) {
    const words = rawOf(p, results);
    rows.push([
      p.name,
      p.table,
      `${p.address} (${toModicon(p.table, p.address)})`,
      words
        ? words
            .map((w) =>
              p.length === 1 && (p.table === 'coil' || p.table === 'discrete') ? String(w) : hex(w),
            )
            .join(' ')
        : '-',
      words ? pointValue(profile, p, words) : 'not read',
      isPointName(p.name) ? UNIT_OF[POINTS[p.name].kind] : UNIT_OF.alarm,
    ]);
  }
  return `${header(ahu, device.endpoint, profile)}\n${columns(rows)}\n`;
}

function rawOf(p: CompiledPoint, results: ReadResult[]): number[] | undefined {
  const r = results.find(
    (x) =>
      x.request.table === p.table &&
      p.address >= x.request.address &&
      p.address + p.length <= x.request.address + x.values.length,
  );
  if (!r) return undefined;
  const at = p.address - r.request.address;
  return r.values.slice(at, at + p.length).map((v) => (typeof v === 'boolean' ? Number(v) : v));
}

/** The point decoded alone, as the device decodes it: its value, its alarms, or "no data". */
function pointValue(profile: CompiledProfile, p: CompiledPoint, words: number[]): string {
  const fc = p.table === 'coil' ? 1 : p.table === 'discrete' ? 2 : p.table === 'input' ? 4 : 3;
  const s = profile.decodeReads([
    { request: { fc, table: p.table, address: p.address, count: p.length }, values: words },
  ]) as unknown as Record<string, unknown> & { alarms: string[]; absent: string[] };
  return shown(s, p.name, p.kind === 'alarm');
}

const hex = (w: number): string => `0x${w.toString(16).padStart(4, '0')}`;
